"""Rich renderables (no Textual) shared by the panes and the CLI, and the static HTML report."""
