"""Active learning of exclusion contours: simulate only where the 95 % CLs contour is still uncertain.

``toy`` is the truth-known 2-D scan (signal mass x signal strength, exact likelihood); ``surrogate`` the
Gaussian-process model of the transformed CLs; ``acquisition`` the level-set (straddle) batch choice and the
stopping rule; ``contour`` the comparison with the exact contour; ``plots`` the figures. No engine imports.
"""
