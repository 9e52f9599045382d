"""SCIM filters (RFC 7644 §3.4.2.2): one grammar, one visitor, two backends.

grammar.py  text -> a typed tree (and PATCH paths), the parser's workarounds and the limits
visitor.py  what both backends share: dispatch, attribute lookup, operator and type checks
sql.py      tree -> SQLAlchemy WHERE clauses and sort keys
match.py    tree -> predicate over a resource's SCIM JSON document (PATCH value filters)

Deliberately empty: importing the grammar must not pull in SQLAlchemy.
"""
