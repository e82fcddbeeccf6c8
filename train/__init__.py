"""Multi2OIE tagger and MT4CrossOIE multi-stage tuning (installed as ``openie4pp.train``)."""
