"""The bad-input suite: a table of cases run end to end against the installed execloop."""
