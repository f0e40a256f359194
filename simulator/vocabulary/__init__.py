"""The shared vocabulary: the only part of ``simulator`` the components import.

Imports nothing of the project above it.
"""
