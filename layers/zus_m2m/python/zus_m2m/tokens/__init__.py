"""Token vending: three tiers (container memory, DynamoDB, Zus), single flight, an hourly budget."""
