# The VPC firewall rules of one cluster, from `nsgsync export json` (provider: gcp).
#
# Every rule is keyed by its nsgsync key, which is the rule's name
# (nsgsync-<cluster>-<segment>-<i|e>-<hash>), so a policy change adds or removes exactly
# the rules that changed. Each body is a compute v1 Firewall in its REST JSON shape; the
# arguments below copy it field by field. The name and the description are kept as they
# are: nsgsync recognises its own rules by the name prefix and the `nsgsync:<cluster>`
# marker that starts the description (for `nsgsync plan` in CI, or a return to it).

locals {
  export = jsondecode(file(var.resources_file))

  firewalls = { for r in local.export.desired : r.key => r.body if r.type == "firewall" }
}

resource "google_compute_firewall" "this" {
  for_each = local.firewalls

  name = each.value.name
  # The export names the network as projects/P/global/networks/N: its project is the
  # rules' project (for a Shared VPC, the host project).
  project     = coalesce(var.project, regex("^projects/([^/]+)/", each.value.network)[0])
  network     = coalesce(var.network, each.value.network)
  description = each.value.description
  direction   = each.value.direction
  priority    = each.value.priority
  disabled    = each.value.disabled

  source_ranges           = lookup(each.value, "sourceRanges", null)
  destination_ranges      = lookup(each.value, "destinationRanges", null)
  target_tags             = lookup(each.value, "targetTags", null)
  target_service_accounts = lookup(each.value, "targetServiceAccounts", null)

  # A rule has allowed or denied entries, never both; an entry without ports covers
  # every port of its protocol.
  dynamic "allow" {
    for_each = lookup(each.value, "allowed", [])
    content {
      protocol = allow.value.IPProtocol
      ports    = lookup(allow.value, "ports", null)
    }
  }

  dynamic "deny" {
    for_each = lookup(each.value, "denied", [])
    content {
      protocol = deny.value.IPProtocol
      ports    = lookup(deny.value, "ports", null)
    }
  }

  lifecycle {
    precondition {
      condition     = local.export.kind == "Desired" && local.export.provider == "gcp"
      error_message = "resources_file must be written by `nsgsync export json` for a topology with provider: gcp."
    }
  }
}
