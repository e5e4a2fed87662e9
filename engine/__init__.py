"""The difflens engine: models, corpora, ADL compute, readouts, steering, agent, server (torch lives here).

Importing this package stays cheap; torch is imported by the modules that need it.
"""
