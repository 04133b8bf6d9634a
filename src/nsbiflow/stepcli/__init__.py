"""``nsbiflow-step``: the stage programs of the NSBI chain, one subcommand per stage (see the step contract)."""
