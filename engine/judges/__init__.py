"""The method's three judges (steering coherence, Patchscope scale and tokens, token relevance) as one setting:
an LLM when configured, else the offline stand-ins, always named in what they produced."""
