"""Textual stylesheets of the workbench (a package, so that installs ship the .tcss files)."""
