"""The command line: click commands that call the core and render its results. Only cli/ prints."""
