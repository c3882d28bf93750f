"""The `loyalty` command line: thin Typer commands that parse input, call a service, print."""
