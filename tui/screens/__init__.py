"""The workbench's screens: start (runs and sessions), workbench (the panes), keys help, small forms."""
