"""HTTP: the exchange core every server and client adapter is a page of adaptation over."""
