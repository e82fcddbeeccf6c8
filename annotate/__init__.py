"""Two-stage LLM annotation that builds OpenIE4++ (installed as ``openie4pp.annotate``)."""
