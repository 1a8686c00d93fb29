"""What users touch: the `cod` command line, the REST API, job files, the request client and the
read side (queries, views). The only production package that imports both `bridge` and
`executor`."""
