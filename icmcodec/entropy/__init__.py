"""Entropy coding: integer tables (``tables``) and the constriction bridge (``coder``)."""
from icmcodec.entropy.coder import CorruptStreamError, TableCoder
from icmcodec.entropy.tables import IntTables, counts_from_pmf, gaussian_tables, stack_tables

__all__ = ["CorruptStreamError", "IntTables", "TableCoder", "counts_from_pmf", "gaussian_tables", "stack_tables"]
