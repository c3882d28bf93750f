"""The use cases' SQL: queries and writers of the domain's rows, no use case, no transaction."""
