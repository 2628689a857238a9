"""Allocation: exact shared-cost splits, reviewed rules, coverage KPIs, the exception queue."""
