"""The command line: `nsgsync compile | explain | plan | apply | export`."""
