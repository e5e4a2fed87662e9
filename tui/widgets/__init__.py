"""The workbench's panes; each owns one reactive and a watch_ that paints it."""
