"""The fitting service: warm fits over HTTP (``nsbiflow serve``) and its client.

Models are loaded once per process and kept warm; requests name a model by store digest or archive
name, never by a file-system path. See docs/service.md.
"""
