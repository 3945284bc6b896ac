"""Terraform as an executor: phasegate changes variables and applies a saved plan, so a stack
managed by Terraform is never changed behind Terraform's back (the next `apply` would revert it)."""
