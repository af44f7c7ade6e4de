"""The AWS stack (CloudFormation, written with troposphere) and the commands that write and deploy it."""
