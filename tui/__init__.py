"""The difflens front door: typer CLI, Textual workbench and the engine client. Never imports torch."""
