variable "name" {
  description = "Environment name."
  type        = string
}

variable "origin_domain" {
  description = "The ALB's DNS name."
  type        = string
}

variable "origin_protocol" {
  description = "How CloudFront reaches the ALB: http-only, or https-only when it listens on HTTPS."
  type        = string
}

variable "static_paths" {
  description = "Path patterns cached at the edge."
  type        = list(string)
}

variable "price_class" {
  description = "PriceClass_100, PriceClass_200 or PriceClass_All."
  type        = string
}

variable "tags" {
  description = "Tags on the distribution (the environment's discovery tags among them)."
  type        = map(string)
}
