variable "db_identifier" {
  description = "The RDS instance the group is for (the group's name starts with it)."
  type        = string
}

variable "family" {
  description = "Parameter group family of the instance's engine version."
  type        = string
}

variable "max_connections" {
  description = "max_connections: the class's memory in MiB over the MiB per connection."
  type        = number
}

variable "idle_in_transaction_session_timeout_ms" {
  description = "Ends sessions idle inside a transaction after this long (0: never)."
  type        = number
}

variable "tcp_keepalives_idle_seconds" {
  description = "Idle seconds before PostgreSQL probes a silent client."
  type        = number
}

variable "log_min_duration_statement_ms" {
  description = "Statements slower than this are logged (-1: none)."
  type        = number
}

variable "tags" {
  description = "Tags on the group."
  type        = map(string)
}
