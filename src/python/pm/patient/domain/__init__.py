"""Plain Python: the patient, its events and the errors of the domain (no framework imports)."""
