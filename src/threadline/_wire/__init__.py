"""Wire: the strict W3C codecs, the carrier and its formats, the environment carrier."""
