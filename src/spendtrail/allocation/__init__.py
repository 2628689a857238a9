"""Allocation (docs/allocation.md): shared cost split exactly, the reviewed rules that say how,
coverage KPIs and the exception queue. Layer 5: reads and writes the books through ``ledger``.

- ``split.py``: an integer pico amount split by weights; children always sum to the parent.
- ``rules.py``: the shared-cost rules YAML, checked whole, every problem with its line.
- ``yamlnodes.py``: reading a reviewed YAML file as line-numbered nodes.
- ``rule_store.py``: rule versions in the ledger, stored only when changed, audited.
- ``shared.py``: a period's shared-cost charges, one origin per rule segment, split exactly.
- ``coverage.py``: the share of cost allocated, shared and quarantined, per currency.
- ``exceptions.py``: the exception queue; assigning an owner writes reallocations, never
  edits an event.
- ``true_up.py``: the true-up rule: a reconciled variance carried to owners, exactly.
- ``entries.py``: a month's allocation entries (direct, reassigned, shared, true-up,
  adjustments of closed months), computed once, stored, and read by every report.
"""
