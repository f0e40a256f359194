"""The AF B2B chain simulator: the conductor and the shared vocabulary.

Message types, header names, identifiers, the envelope model and the error
tree live here, and every component imports them from here.
"""
