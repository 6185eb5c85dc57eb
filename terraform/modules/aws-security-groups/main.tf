# The security groups and rules of one cluster, from `nsgsync export json`.
#
# Every resource is keyed by its nsgsync key (sg/<segment>, sgr/<segment>/<in|out>/...), so
# a policy change adds or removes exactly the rules that changed. Rules are the per-rule
# resources, never inline `ingress`/`egress` blocks: the provider forbids mixing the two.
# The provider revokes AWS's default allow-all egress rule when it creates a group, so an
# isolated egress direction keeps only its rules; an open one has an explicit allow-all
# rule in the export.

locals {
  export = jsondecode(file(var.resources_file))

  groups = { for r in local.export.desired : r.key => r if r.type == "security-group" }
  rules  = { for r in local.export.desired : r.key => r if r.type == "security-group-rule" }

  ingress = { for key, r in local.rules : key => r if !r.body.IsEgress }
  egress  = { for key, r in local.rules : key => r if r.body.IsEgress }

  group_by_segment = { for key, g in local.groups : g.segment => key }
  # A rule whose peer is one of these groups names it "${<group name>}" in the export.
  group_by_ref = { for key, g in local.groups : "$${${g.body.GroupName}}" => key }
}

resource "aws_security_group" "this" {
  for_each = local.groups

  name        = each.value.body.GroupName
  description = each.value.body.Description
  vpc_id      = coalesce(var.vpc_id, each.value.body.VpcId)
  tags        = merge(var.tags, { for t in each.value.body.Tags : t.Key => t.Value })

  lifecycle {
    precondition {
      condition     = local.export.kind == "Desired" && local.export.provider == "aws"
      error_message = "resources_file must be written by `nsgsync export json` for a topology with provider: aws."
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "this" {
  for_each = local.ingress

  security_group_id = aws_security_group.this[local.group_by_segment[each.value.segment]].id
  ip_protocol       = each.value.body.IpProtocol
  # EC2 takes ports for TCP and UDP only ("-1" is every protocol, "132" SCTP).
  from_port      = contains(["tcp", "udp"], each.value.body.IpProtocol) ? each.value.body.FromPort : null
  to_port        = contains(["tcp", "udp"], each.value.body.IpProtocol) ? each.value.body.ToPort : null
  cidr_ipv4      = lookup(each.value.body, "CidrIpv4", null)
  cidr_ipv6      = lookup(each.value.body, "CidrIpv6", null)
  prefix_list_id = lookup(each.value.body, "PrefixListId", null)
  referenced_security_group_id = try(
    aws_security_group.this[local.group_by_ref[each.value.body.ReferencedGroupInfo.GroupId]].id,
    each.value.body.ReferencedGroupInfo.GroupId,
    null,
  )
  description = each.value.body.Description
  tags        = merge(var.tags, { for t in each.value.body.Tags : t.Key => t.Value })
}

resource "aws_vpc_security_group_egress_rule" "this" {
  for_each = local.egress

  security_group_id = aws_security_group.this[local.group_by_segment[each.value.segment]].id
  ip_protocol       = each.value.body.IpProtocol
  from_port         = contains(["tcp", "udp"], each.value.body.IpProtocol) ? each.value.body.FromPort : null
  to_port           = contains(["tcp", "udp"], each.value.body.IpProtocol) ? each.value.body.ToPort : null
  cidr_ipv4         = lookup(each.value.body, "CidrIpv4", null)
  cidr_ipv6         = lookup(each.value.body, "CidrIpv6", null)
  prefix_list_id    = lookup(each.value.body, "PrefixListId", null)
  referenced_security_group_id = try(
    aws_security_group.this[local.group_by_ref[each.value.body.ReferencedGroupInfo.GroupId]].id,
    each.value.body.ReferencedGroupInfo.GroupId,
    null,
  )
  description = each.value.body.Description
  tags        = merge(var.tags, { for t in each.value.body.Tags : t.Key => t.Value })
}
