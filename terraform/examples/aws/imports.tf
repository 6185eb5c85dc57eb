# Moving from `nsgsync apply` to Terraform: adopt what already exists instead of creating
# it again. Write the JSON with the cloud's ids of what exists,
#
#   nsgsync export json -f ... --topology ... -o nsgsync.json --import-existing
#
# and the first `terraform apply` imports them. Without `existing` in the JSON (a plain
# `nsgsync export json`) these blocks import nothing. for_each in import blocks needs
# Terraform 1.7.

locals {
  existing = lookup(jsondecode(file("${path.module}/nsgsync.json")), "existing", {})
}

import {
  for_each = { for key, id in local.existing : key => id if startswith(key, "sg/") }
  to       = module.nsgsync.aws_security_group.this[each.key]
  id       = each.value
}

import {
  for_each = { for key, id in local.existing : key => id if can(regex("^sgr/[^/]+/in/", key)) }
  to       = module.nsgsync.aws_vpc_security_group_ingress_rule.this[each.key]
  id       = each.value
}

import {
  for_each = { for key, id in local.existing : key => id if can(regex("^sgr/[^/]+/out/", key)) }
  to       = module.nsgsync.aws_vpc_security_group_egress_rule.this[each.key]
  id       = each.value
}
