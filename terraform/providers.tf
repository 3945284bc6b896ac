provider "aws" {
  region = var.region
}

# The second region (regions.expand); the primary's region while there is none, so the
# provider always has a region to be configured with.
provider "aws" {
  alias  = "secondary"
  region = var.secondary_region != "" ? var.secondary_region : var.region
}
