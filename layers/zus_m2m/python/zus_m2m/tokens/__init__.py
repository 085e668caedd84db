"""Token vending: three tiers (container memory, DynamoDB, Zus), single flight, an hourly budget
(``vendor``); and the scheduled pre-refresh of the tokens in use (``pre_refresh``)."""
