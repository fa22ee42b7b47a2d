"""The video library: an embedded database of analysed videos (store), `vidcap index` (indexer) and
`vidcap search` (search)."""
