"""vector_index: stores document segments (text, page, boxes, vector) per tenant and searches them.

Search is hybrid: nearest neighbours by cosine distance and Postgres full text, fused by reciprocal rank.
"""
