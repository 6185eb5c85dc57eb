# An example root module: the security groups of the example cluster (config/example),
# from the JSON `nsgsync export json` writes. Regenerate nsgsync.json after every policy
# change (in CI), then plan and apply as usual:
#
#   nsgsync export json -f config/example/cluster --topology config/example/topology.yaml \
#       -o terraform/examples/aws/nsgsync.json

provider "aws" {
  region = var.region
}

module "nsgsync" {
  source = "../../modules/aws-security-groups"

  resources_file = "${path.module}/nsgsync.json"
  vpc_id         = var.vpc_id
  tags           = var.tags
}

output "security_group_ids" {
  description = "Each segment's security group id, by segment name."
  value       = module.nsgsync.security_group_ids
}
