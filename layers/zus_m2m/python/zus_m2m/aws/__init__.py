"""boto3 adapters. Each accepts a client built by the handler and translates botocore errors once."""
