"""The AWS stack of the system as a CloudFormation template, written with troposphere.

One VPC (public and private subnets in two zones), a PostgreSQL RDS instance per service that owns data
(credentials generated into Secrets Manager, a Route53 health check each), an MSK cluster, an ECS cluster
running one Fargate service per back-end service (found by each other through a Cloud Map private DNS
namespace) and an application load balancer in front of the gateway.

Production defaults: the load balancer answers HTTPS only (HTTP:80 redirects) with the certificate named
by a parameter and never forwards /metrics; every task runs with PM_ENV=production and auth seeds no demo
user; the database URLs require TLS (sslmode=require) and MSK accepts TLS clients only; billing answers
only callers with the generated service token; keys are fetched inside the Cloud Map namespace.
"""

from __future__ import annotations

from typing import Any

from troposphere import (
    AWSObject,
    Equals,
    GetAtt,
    GetAZs,
    If,
    Join,
    Not,
    NoValue,
    Output,
    Parameter,
    Ref,
    Select,
    Sub,
    Tags,
    Template,
    ec2,
    ecs,
    iam,
    logs,
    msk,
    rds,
    route53,
    secretsmanager,
    servicediscovery,
)
from troposphere import elasticloadbalancingv2 as elb

from pm.common.catalog import BY_NAME, SERVICES, ServiceSpec

NAMESPACE = "pm.local"
POSTGRES_PORT = 5432
KAFKA_TLS_PORT = 9094
HTTPS_PORT = 443
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
DB_USER = "pm"
HAS_KAFKA_BOOTSTRAP = "HasKafkaBootstrap"
HAS_TRACE_COLLECTOR = "HasTraceCollector"


def host(spec: ServiceSpec) -> str:
    """The service's name in the Cloud Map namespace."""
    return f"{spec.name}.{NAMESPACE}"


GATEWAY = BY_NAME["gateway"]


def peer_settings(spec: ServiceSpec) -> dict[str, str]:
    """The addresses a service reaches its peers at, through Cloud Map names."""
    settings: dict[str, str] = {}
    for peer in spec.peers:
        other = BY_NAME[peer]
        if peer == "billing":
            settings["PM_BILLING_GRPC_TARGET"] = f"{host(other)}:{other.extra_ports['PM_BILLING_GRPC_PORT']}"
        else:
            settings[f"PM_{peer.upper()}_URL"] = f"http://{host(other)}:{other.port}"
    if spec.verifies_tokens:
        auth = BY_NAME["auth"]
        # Inside the private namespace: only tasks in the services' security group can answer it.
        settings["PM_JWKS_URL"] = f"http://{host(auth)}:{auth.port}/.well-known/jwks.json"
        settings["PM_JWT_ISSUER"] = "pm-auth"
    return settings


# The load balancer lives in the public subnets, every task (the gateway included) in the private ones.
PUBLIC_SUBNET_CIDRS = ("10.0.0.0/24", "10.0.1.0/24")
PRIVATE_SUBNET_CIDRS = ("10.0.10.0/24", "10.0.11.0/24")


def proxy_settings(spec: ServiceSpec) -> dict[str, str]:
    """Whose X-Forwarded-For a service believes: the gateway the load balancer's, the others the gateway's."""
    if spec is GATEWAY:
        return {"PM_GATEWAY_TRUSTED_PROXIES": ",".join(PUBLIC_SUBNET_CIDRS)}
    return {"PM_TRUSTED_PROXIES": ",".join(PRIVATE_SUBNET_CIDRS)}


def container_environment(spec: ServiceSpec) -> dict[str, str]:
    """Plain (non-secret) settings of a service's container."""
    environment = {
        "PM_ENV": "production",
        "PM_HOST": "0.0.0.0",  # noqa: S104 - the task's own network interface (awsvpc)
        "PM_LOG_LEVEL": "INFO",
        spec.port_var: str(spec.port),
    }
    environment.update({name: str(port) for name, port in spec.extra_ports.items()})
    environment.update(peer_settings(spec))
    environment.update(proxy_settings(spec))
    if spec.name == "auth":
        environment["PM_AUTH_SEED_DEMO_USER"] = "false"
    if spec.uses_kafka:
        environment["PM_KAFKA_TLS"] = "true"  # MSK's certificates chain to a CA the system trusts
    return environment


def _text(title: str, default: str, description: str) -> Parameter:
    return Parameter(title, Type="String", Default=default, Description=description)


def _choice(title: str, choices: list[str]) -> Parameter:
    """A size to pick from `choices`; the first (the smallest) by default."""
    return Parameter(title, Type="String", Default=choices[0], AllowedValues=choices)


def _number(title: str, default: int, *, minimum: int, maximum: int) -> Parameter:
    return Parameter(title, Type="Number", Default=str(default), MinValue=str(minimum), MaxValue=str(maximum))


def _arn(title: str, service: str, description: str) -> Parameter:
    """An existing resource of an AWS service, named by its ARN (no default: the deployer must name it)."""
    return Parameter(
        title, Type="String", AllowedPattern=f"arn:aws[a-z-]*:{service}:.+", Description=description
    )


class _Builder:
    def __init__(self) -> None:
        self.t = Template(
            Description="Patient Management System: VPC, RDS PostgreSQL, MSK, ECS Fargate services, ALB"
        )
        self.t.set_version("2010-09-09")

    def add(self, resource: AWSObject) -> AWSObject:
        return self.t.add_resource(resource)

    def parameters(self) -> None:
        t = self.t
        self.image_prefix = t.add_parameter(
            _text(
                "ImageRepositoryPrefix",
                "pm-",
                "Prefix of the service image repositories (e.g. an ECR registry/pm-): "
                "images are <prefix><service>:<tag>",
            )
        )
        self.image_tag = t.add_parameter(_text("ImageTag", "latest", "Tag of every service image"))
        self.db_class = t.add_parameter(
            _choice(
                "DatabaseInstanceClass",
                ["db.t3.micro", "db.t3.small", "db.t3.medium", "db.t4g.micro", "db.t4g.small"],
            )
        )
        self.db_storage = t.add_parameter(_number("DatabaseStorageGiB", 20, minimum=20, maximum=1000))
        self.kafka_instance = t.add_parameter(
            _choice("KafkaInstanceType", ["kafka.t3.small", "kafka.m5.large", "kafka.m7g.large"])
        )
        self.kafka_volume = t.add_parameter(_number("KafkaVolumeGiB", 20, minimum=1, maximum=16384))
        self.kafka_bootstrap = t.add_parameter(
            _text(
                "KafkaBootstrapServers",
                "",
                "The MSK cluster's TLS bootstrap brokers. CloudFormation cannot read them; "
                "the deploy command fills this in once the cluster exists. While empty, the services "
                "that use Kafka run no tasks.",
            )
        )
        self.trace_collector = t.add_parameter(
            _text(
                "TraceCollectorEndpoint",
                "",
                "An OTLP/HTTP collector the services send their traces to (OTEL_EXPORTER_OTLP_"
                "ENDPOINT, e.g. http://otel-collector.internal:4318). Empty: tracing is off.",
            )
        )
        self.task_cpu = t.add_parameter(_choice("TaskCpu", ["256", "512", "1024", "2048"]))
        self.task_memory = t.add_parameter(_choice("TaskMemoryMiB", ["512", "1024", "2048", "4096"]))
        self.desired_count = t.add_parameter(_number("DesiredCount", 1, minimum=0, maximum=10))
        self.jwt_secret = t.add_parameter(
            _arn(
                "JwtPrivateKeySecretArn",
                "secretsmanager",
                "Secrets Manager secret holding auth's PEM private signing key",
            )
        )
        self.certificate = t.add_parameter(
            _arn("CertificateArn", "acm", "ACM certificate the load balancer's HTTPS listener presents")
        )
        t.add_condition(HAS_KAFKA_BOOTSTRAP, Not(Equals(Ref(self.kafka_bootstrap), "")))
        t.add_condition(HAS_TRACE_COLLECTOR, Not(Equals(Ref(self.trace_collector), "")))

    def network(self) -> None:
        self.vpc = self.add(
            ec2.VPC(
                "Vpc",
                CidrBlock="10.0.0.0/16",
                EnableDnsHostnames=True,
                EnableDnsSupport=True,
                Tags=Tags(Name=Sub("${AWS::StackName}-vpc")),
            )
        )
        gateway = self.add(ec2.InternetGateway("InternetGateway"))
        attachment = self.add(
            ec2.VPCGatewayAttachment(
                "InternetGatewayAttachment", VpcId=Ref(self.vpc), InternetGatewayId=Ref(gateway)
            )
        )
        public_routes = self.add(ec2.RouteTable("PublicRouteTable", VpcId=Ref(self.vpc)))
        self.add(
            ec2.Route(
                "PublicDefaultRoute",
                DependsOn=attachment.title,
                RouteTableId=Ref(public_routes),
                DestinationCidrBlock="0.0.0.0/0",
                GatewayId=Ref(gateway),
            )
        )
        self.public_subnets: list[ec2.Subnet] = []
        self.private_subnets: list[ec2.Subnet] = []
        for index in range(2):
            number = index + 1
            zone = Select(index, GetAZs(""))
            public = self._subnet(
                "Public",
                number,
                public_routes,
                CidrBlock=PUBLIC_SUBNET_CIDRS[index],
                AvailabilityZone=zone,
                MapPublicIpOnLaunch=True,
            )
            # One NAT gateway per zone: tasks in private subnets pull images and reach AWS APIs through it.
            address = self.add(ec2.EIP(f"NatAddress{number}", Domain="vpc", DependsOn=attachment.title))
            nat = self.add(
                ec2.NatGateway(
                    f"NatGateway{number}",
                    AllocationId=GetAtt(address, "AllocationId"),
                    SubnetId=Ref(public),
                )
            )
            private_routes = self.add(ec2.RouteTable(f"PrivateRouteTable{number}", VpcId=Ref(self.vpc)))
            self.add(
                ec2.Route(
                    f"PrivateDefaultRoute{number}",
                    RouteTableId=Ref(private_routes),
                    DestinationCidrBlock="0.0.0.0/0",
                    NatGatewayId=Ref(nat),
                )
            )
            private = self._subnet(
                "Private",
                number,
                private_routes,
                CidrBlock=PRIVATE_SUBNET_CIDRS[index],
                AvailabilityZone=zone,
            )
            self.public_subnets.append(public)
            self.private_subnets.append(private)

    def _subnet(self, kind: str, number: int, routes: ec2.RouteTable, **properties: Any) -> ec2.Subnet:
        """`<kind>Subnet<number>` in the VPC, its traffic routed by `routes`."""
        subnet = self.add(
            ec2.Subnet(
                f"{kind}Subnet{number}",
                VpcId=Ref(self.vpc),
                Tags=Tags(Name=Sub(f"${{AWS::StackName}}-{kind.lower()}-{number}")),
                **properties,
            )
        )
        self.add(
            ec2.SubnetRouteTableAssociation(
                f"{kind}Subnet{number}Routes", SubnetId=Ref(subnet), RouteTableId=Ref(routes)
            )
        )
        return subnet

    def security_groups(self) -> None:
        self.alb_sg = self.add(
            ec2.SecurityGroup(
                "LoadBalancerSecurityGroup",
                GroupDescription="HTTPS (and HTTP, redirected) from anywhere to the load balancer",
                VpcId=Ref(self.vpc),
                SecurityGroupIngress=[
                    ec2.SecurityGroupRule(IpProtocol="tcp", FromPort=port, ToPort=port, CidrIp="0.0.0.0/0")
                    for port in (80, HTTPS_PORT)
                ],
            )
        )
        self.services_sg = self._group_open_to(
            "ServicesSecurityGroup",
            "ECS tasks: the gateway port from the load balancer, any port between tasks",
            GATEWAY.port,
            self.alb_sg,
        )
        self.add(
            ec2.SecurityGroupIngress(
                "ServicesToServicesIngress",
                GroupId=Ref(self.services_sg),
                IpProtocol="tcp",
                FromPort=4000,
                ToPort=9999,
                SourceSecurityGroupId=Ref(self.services_sg),
            )
        )
        self.db_sg = self._group_open_to(
            "DatabaseSecurityGroup", "PostgreSQL from the ECS tasks only", POSTGRES_PORT, self.services_sg
        )
        self.kafka_sg = self._group_open_to(
            "KafkaSecurityGroup",
            "Kafka (TLS listener) from the ECS tasks only",
            KAFKA_TLS_PORT,
            self.services_sg,
        )

    def _group_open_to(
        self, title: str, description: str, port: int, source: ec2.SecurityGroup
    ) -> ec2.SecurityGroup:
        """A security group in the VPC that admits TCP on `port` from the members of `source` only."""
        return self.add(
            ec2.SecurityGroup(
                title,
                GroupDescription=description,
                VpcId=Ref(self.vpc),
                SecurityGroupIngress=[
                    ec2.SecurityGroupRule(
                        IpProtocol="tcp", FromPort=port, ToPort=port, SourceSecurityGroupId=Ref(source)
                    )
                ],
            )
        )

    def service_credentials(self) -> None:
        self.billing_token = self.add(
            secretsmanager.Secret(
                "BillingServiceToken",
                Name=Sub("${AWS::StackName}/billing/service-token"),
                Description="PM_BILLING_SERVICE_TOKEN: what patient presents to billing's gRPC API",
                GenerateSecretString=secretsmanager.GenerateSecretString(
                    PasswordLength=48, ExcludePunctuation=True
                ),
            )
        )

    def databases(self) -> None:
        subnet_group = self.add(
            rds.DBSubnetGroup(
                "DatabaseSubnetGroup",
                DBSubnetGroupDescription="Private subnets for the service databases",
                SubnetIds=[Ref(s) for s in self.private_subnets],
            )
        )
        self.database_url_secrets: dict[str, secretsmanager.Secret] = {}
        for spec in SERVICES:
            if not spec.owns_database:
                continue
            credentials = self.add(
                secretsmanager.Secret(
                    f"{spec.title}DatabaseCredentials",
                    Name=Sub(f"${{AWS::StackName}}/{spec.name}/database-credentials"),
                    Description=f"Master credentials of the {spec.name} database",
                    GenerateSecretString=secretsmanager.GenerateSecretString(
                        SecretStringTemplate=f'{{"username": "{DB_USER}"}}',
                        GenerateStringKey="password",
                        PasswordLength=32,
                        # Letters and digits only: the password goes into a database URL unescaped.
                        ExcludePunctuation=True,
                    ),
                )
            )
            password = f"{{{{resolve:secretsmanager:${{{credentials.title}}}:SecretString:password}}}}"
            instance = self.add(
                rds.DBInstance(
                    f"{spec.title}Database",
                    DeletionPolicy="Snapshot",
                    UpdateReplacePolicy="Snapshot",
                    DBInstanceIdentifier=Sub(f"${{AWS::StackName}}-{spec.name}-db"),
                    DBInstanceClass=Ref(self.db_class),
                    Engine="postgres",
                    EngineVersion="16.9",
                    DBName=spec.name,
                    Port=str(POSTGRES_PORT),
                    MasterUsername=DB_USER,
                    MasterUserPassword=Sub(password),
                    AllocatedStorage=Ref(self.db_storage),
                    StorageType="gp3",
                    StorageEncrypted=True,
                    PubliclyAccessible=False,
                    BackupRetentionPeriod=7,
                    DBSubnetGroupName=Ref(subnet_group),
                    VPCSecurityGroups=[Ref(self.db_sg)],
                    Tags=Tags(Service=spec.name),
                )
            )
            self.database_url_secrets[spec.name] = self.add(
                secretsmanager.Secret(
                    f"{spec.title}DatabaseUrl",
                    Name=Sub(f"${{AWS::StackName}}/{spec.name}/database-url"),
                    Description=f"{spec.database_var} of the {spec.name} service",
                    SecretString=Sub(
                        # libpq refuses a connection the server will not encrypt.
                        f"postgresql+psycopg2://{DB_USER}:{password}@${{Host}}:${{Port}}/{spec.name}"
                        "?sslmode=require",
                        Host=GetAtt(instance, "Endpoint.Address"),
                        Port=GetAtt(instance, "Endpoint.Port"),
                    ),
                )
            )
            self.add(
                route53.HealthCheck(
                    f"{spec.title}DatabaseHealthCheck",
                    HealthCheckConfig=route53.HealthCheckConfig(
                        Type="TCP",
                        FullyQualifiedDomainName=GetAtt(instance, "Endpoint.Address"),
                        Port=POSTGRES_PORT,
                        RequestInterval=30,
                        FailureThreshold=3,
                    ),
                    HealthCheckTags=Tags(Name=Sub(f"${{AWS::StackName}}-{spec.name}-db")),
                )
            )
            self.t.add_output(
                Output(
                    f"{spec.title}DatabaseEndpoint",
                    Value=GetAtt(instance, "Endpoint.Address"),
                    Description=f"Host name of the {spec.name} database",
                )
            )

    def kafka(self) -> None:
        self.kafka_cluster = self.add(
            msk.Cluster(
                "KafkaCluster",
                ClusterName=Sub("${AWS::StackName}-kafka"),
                KafkaVersion="3.6.0",
                NumberOfBrokerNodes=2,
                BrokerNodeGroupInfo=msk.BrokerNodeGroupInfo(
                    ClientSubnets=[Ref(s) for s in self.private_subnets],
                    InstanceType=Ref(self.kafka_instance),
                    SecurityGroups=[Ref(self.kafka_sg)],
                    StorageInfo=msk.StorageInfo(
                        EBSStorageInfo=msk.EBSStorageInfo(VolumeSize=Ref(self.kafka_volume))
                    ),
                ),
                # TLS only, between clients and brokers and between brokers.
                EncryptionInfo=msk.EncryptionInfo(
                    EncryptionInTransit=msk.EncryptionInTransit(ClientBroker="TLS", InCluster=True)
                ),
            )
        )
        self.t.add_output(Output("KafkaClusterArn", Value=Ref(self.kafka_cluster)))

    def cluster(self) -> None:
        self.ecs_cluster = self.add(
            ecs.Cluster(
                "EcsCluster",
                ClusterName=Sub("${AWS::StackName}-cluster"),
                ClusterSettings=[ecs.ClusterSetting(Name="containerInsights", Value="enabled")],
            )
        )
        self.namespace = self.add(
            servicediscovery.PrivateDnsNamespace(
                "ServiceNamespace",
                Name=NAMESPACE,
                Vpc=Ref(self.vpc),
                Description="Private DNS names of the services (<service>.pm.local)",
            )
        )
        self.execution_role = self.add(
            iam.Role(
                "TaskExecutionRole",
                AssumeRolePolicyDocument={
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                ManagedPolicyArns=["arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"],
                Policies=[
                    iam.Policy(
                        PolicyName="read-service-secrets",
                        PolicyDocument={
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": "secretsmanager:GetSecretValue",
                                    "Resource": [Ref(s) for s in self.database_url_secrets.values()]
                                    + [Ref(self.jwt_secret), Ref(self.billing_token)],
                                }
                            ],
                        },
                    )
                ],
            )
        )
        self.t.add_output(Output("ClusterName", Value=Ref(self.ecs_cluster)))
        self.t.add_output(Output("ServiceNamespaceId", Value=GetAtt(self.namespace, "Id")))

    def load_balancer(self) -> None:
        self.alb = self.add(
            elb.LoadBalancer(
                "LoadBalancer",
                Name=Sub("${AWS::StackName}-alb"),
                Type="application",
                Scheme="internet-facing",
                Subnets=[Ref(s) for s in self.public_subnets],
                SecurityGroups=[Ref(self.alb_sg)],
            )
        )
        self.target_group = self.add(
            elb.TargetGroup(
                "GatewayTargetGroup",
                Name=Sub("${AWS::StackName}-gateway"),
                VpcId=Ref(self.vpc),
                TargetType="ip",
                Protocol="HTTP",
                Port=GATEWAY.port,
                HealthCheckProtocol="HTTP",
                # Readiness: 503 only when the gateway cannot serve (auth or patient down); 200 DEGRADED
                # (analytics or Kafka away) keeps it in the balancer.
                HealthCheckPath="/health",
                HealthCheckIntervalSeconds=15,
                HealthyThresholdCount=2,
                UnhealthyThresholdCount=3,
                Matcher=elb.Matcher(HttpCode="200"),
                TargetGroupAttributes=[
                    elb.TargetGroupAttribute(Key="deregistration_delay.timeout_seconds", Value="15")
                ],
            )
        )
        self.listener = self.add(
            elb.Listener(
                "HttpsListener",
                LoadBalancerArn=Ref(self.alb),
                Port=HTTPS_PORT,
                Protocol="HTTPS",
                SslPolicy=TLS_POLICY,
                Certificates=[elb.Certificate(CertificateArn=Ref(self.certificate))],
                DefaultActions=[elb.Action(Type="forward", TargetGroupArn=Ref(self.target_group))],
            )
        )
        self.add(
            elb.Listener(
                "HttpListener",
                LoadBalancerArn=Ref(self.alb),
                Port=80,
                Protocol="HTTP",
                DefaultActions=[
                    elb.Action(
                        Type="redirect",
                        RedirectConfig=elb.RedirectConfig(
                            Protocol="HTTPS", Port=str(HTTPS_PORT), StatusCode="HTTP_301"
                        ),
                    )
                ],
            )
        )
        # Prometheus scrapes the tasks inside the VPC; from the internet /metrics does not exist.
        self.add(
            elb.ListenerRule(
                "MetricsNotPublic",
                ListenerArn=Ref(self.listener),
                Priority=1,
                Conditions=[
                    elb.Condition(
                        Field="path-pattern",
                        PathPatternConfig=elb.PathPatternConfig(Values=["/metrics", "/metrics/*"]),
                    )
                ],
                Actions=[
                    elb.ListenerRuleAction(
                        Type="fixed-response",
                        FixedResponseConfig=elb.FixedResponseConfig(
                            StatusCode="404",
                            ContentType="application/json",
                            MessageBody='{"title": "Not Found", "status": 404}',
                        ),
                    )
                ],
            )
        )
        self.t.add_output(
            Output(
                "LoadBalancerDnsName",
                Value=GetAtt(self.alb, "DNSName"),
                Description="Public address of the gateway",
            )
        )

    def service(self, spec: ServiceSpec) -> None:
        log_group = self.add(
            logs.LogGroup(
                f"{spec.title}LogGroup",
                LogGroupName=Sub(f"/ecs/${{AWS::StackName}}/{spec.name}"),
                RetentionInDays=30,
            )
        )
        environment = [
            ecs.Environment(Name=k, Value=v) for k, v in sorted(container_environment(spec).items())
        ]
        # Spans go to the named collector; without one there is nowhere to send them in the cloud.
        environment.append(
            If(
                HAS_TRACE_COLLECTOR,
                ecs.Environment(Name="OTEL_EXPORTER_OTLP_ENDPOINT", Value=Ref(self.trace_collector)),
                ecs.Environment(Name="OTEL_TRACES_EXPORTER", Value="none"),
            )
        )
        if spec.uses_kafka:
            environment.append(
                If(
                    HAS_KAFKA_BOOTSTRAP,
                    ecs.Environment(Name="PM_KAFKA_BOOTSTRAP_SERVERS", Value=Ref(self.kafka_bootstrap)),
                    NoValue,
                )
            )
        secrets = []
        if spec.owns_database:
            secrets.append(
                ecs.Secret(Name=spec.database_var, ValueFrom=Ref(self.database_url_secrets[spec.name]))
            )
        if spec.name == "auth":
            secrets.append(ecs.Secret(Name="PM_JWT_PRIVATE_KEY", ValueFrom=Ref(self.jwt_secret)))
        if spec.name == "billing" or "billing" in spec.peers:
            secrets.append(ecs.Secret(Name="PM_BILLING_SERVICE_TOKEN", ValueFrom=Ref(self.billing_token)))
        ports = [spec.port, *spec.extra_ports.values()]
        task = self.add(
            ecs.TaskDefinition(
                f"{spec.title}TaskDefinition",
                Family=Sub(f"${{AWS::StackName}}-{spec.name}"),
                RequiresCompatibilities=["FARGATE"],
                NetworkMode="awsvpc",
                Cpu=Ref(self.task_cpu),
                Memory=Ref(self.task_memory),
                ExecutionRoleArn=GetAtt(self.execution_role, "Arn"),
                ContainerDefinitions=[
                    ecs.ContainerDefinition(
                        Name=spec.name,
                        Image=Join("", [Ref(self.image_prefix), spec.name, ":", Ref(self.image_tag)]),
                        Essential=True,
                        PortMappings=[ecs.PortMapping(ContainerPort=p, Protocol="tcp") for p in ports],
                        Environment=environment,
                        Secrets=secrets,
                        StopTimeout=15,
                        HealthCheck=ecs.HealthCheck(
                            Command=[
                                "CMD",
                                "python3",
                                "-c",
                                "import urllib.request; "
                                # Liveness: ECS replaces a task whose process stopped answering, never
                                # one whose dependencies are away (a restart would not bring them back).
                                f"urllib.request.urlopen('http://127.0.0.1:{spec.port}/health/live', timeout=4)",
                            ],
                            Interval=15,
                            Timeout=5,
                            Retries=3,
                            StartPeriod=60,
                        ),
                        LogConfiguration=ecs.LogConfiguration(
                            LogDriver="awslogs",
                            Options={
                                "awslogs-group": Ref(log_group),
                                "awslogs-region": Ref("AWS::Region"),
                                "awslogs-stream-prefix": spec.name,
                            },
                        ),
                    )
                ],
            )
        )
        discovery = self.add(
            servicediscovery.Service(
                f"{spec.title}Discovery",
                Name=spec.name,
                NamespaceId=GetAtt(self.namespace, "Id"),
                DnsConfig=servicediscovery.DnsConfig(
                    RoutingPolicy="MULTIVALUE",
                    DnsRecords=[servicediscovery.DnsRecord(Type="A", TTL=10)],
                ),
                HealthCheckCustomConfig=servicediscovery.HealthCheckCustomConfig(FailureThreshold=1),
            )
        )
        desired = Ref(self.desired_count)
        extra: dict[str, Any] = {}
        if spec is GATEWAY:
            extra = {
                # The target group must be attached to a listener before a service can register into it.
                "DependsOn": [self.listener.title],
                "LoadBalancers": [
                    ecs.LoadBalancer(
                        ContainerName=spec.name,
                        ContainerPort=spec.port,
                        TargetGroupArn=Ref(self.target_group),
                    )
                ],
                "HealthCheckGracePeriodSeconds": 60,
            }
        self.add(
            ecs.Service(
                f"{spec.title}Service",
                ServiceName=spec.name,
                Cluster=Ref(self.ecs_cluster),
                LaunchType="FARGATE",
                TaskDefinition=Ref(task),
                # Kafka clients start once the deploy command has told the stack where the brokers are.
                DesiredCount=If(HAS_KAFKA_BOOTSTRAP, desired, 0) if spec.uses_kafka else desired,
                DeploymentConfiguration=ecs.DeploymentConfiguration(
                    MinimumHealthyPercent=100,
                    MaximumPercent=200,
                    DeploymentCircuitBreaker=ecs.DeploymentCircuitBreaker(Enable=True, Rollback=True),
                ),
                NetworkConfiguration=ecs.NetworkConfiguration(
                    AwsvpcConfiguration=ecs.AwsvpcConfiguration(
                        Subnets=[Ref(s) for s in self.private_subnets],
                        SecurityGroups=[Ref(self.services_sg)],
                        AssignPublicIp="DISABLED",
                    )
                ),
                ServiceRegistries=[ecs.ServiceRegistry(RegistryArn=GetAtt(discovery, "Arn"))],
                **extra,
            )
        )


def build_template() -> Template:
    """The whole stack; parameters size it and pick the images."""
    builder = _Builder()
    builder.parameters()
    builder.network()
    builder.security_groups()
    builder.service_credentials()
    builder.databases()
    builder.kafka()
    builder.cluster()
    builder.load_balancer()
    for spec in SERVICES:
        builder.service(spec)
    return builder.t


def template_json() -> str:
    return build_template().to_json(indent=2, sort_keys=True)
