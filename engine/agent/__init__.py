"""The interpretability agent: an LLM reads the ADL evidence, tests hypotheses on the models, and says
what the finetune was for. It sees the models only through `environment.AgentEnvironment`, so the
same loop runs on a live ADL run, on a recorded one (tests, replay), or blind (the baseline).
"""
