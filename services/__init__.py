"""The hub's logic: every SQL query, every rule, every emit lives below here."""
