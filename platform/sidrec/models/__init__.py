"""Recommenders. Every model ranks the full catalog or decodes valid SIDs."""
