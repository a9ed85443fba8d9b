//! AWS EC2 as a provisioning backend, through aws-sdk-ec2: instances on demand or on spot
//! (`InstanceMarketOptions`), tagged with their skycat cluster, with a key pair and a security
//! group opening SSH plus the task's `ports`; describe, stop, start, terminate; and reading a spot
//! interruption from the instance's state.
//!
//! Endpoint and credentials come from the SDK's standard chain: `AWS_ENDPOINT_URL_EC2` /
//! `AWS_ENDPOINT_URL` (moto in the tests), `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles,
//! SSO, instance roles. What a real account needs is in docs/aws-ec2-backend.md.
//!
//! Managed jobs run end to end on SSH pools (this machine cannot reach EC2 instances over SSH);
//! this module is the provider side: launching and the provider's view of a node
//! ([`Ec2Instance::preemption`]).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, InstanceNetworkInterfaceSpecification, VolumeType, Filter, InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceStateName, InstanceType, IpPermission, IpRange,
    MarketType, Placement, ResourceType, SpotInstanceType, SpotMarketOptions, Tag, TagSpecification,
};
use aws_sdk_ec2::Client;

/// Tag carrying the skycat cluster name on every instance (and security group) skycat creates.
pub const CLUSTER_TAG: &str = "skycat-cluster";

/// State reason codes EC2 gives an instance that the spot service interrupted.
pub const SPOT_REASON_CODES: &[&str] =
    &["Server.SpotInstanceTermination", "Server.SpotInstanceShutdown", "Server.SpotInstanceHibernate"];

#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error("EC2 {op} in {region}: {message}")]
    Api { op: &'static str, region: String, code: Option<String>, message: String },
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
}

/// What to launch.
#[derive(Debug, Clone, Default)]
pub struct LaunchSpec {
    pub cluster: String,
    pub image_id: String,
    pub instance_type: String,
    pub count: u32,
    pub spot: bool,
    /// Highest spot price per hour (default: the on-demand price, as EC2 does).
    pub max_spot_price: Option<String>,
    pub key_name: Option<String>,
    pub security_group_ids: Vec<String>,
    pub availability_zone: Option<String>,
    pub subnet_id: Option<String>,
    /// Extra tags (the cluster tag and `Name` are always set).
    pub tags: Vec<(String, String)>,
    /// `Some(false)`: no public address (SkyPilot's `use_internal_ips`); with a subnet only.
    pub associate_public_ip: Option<bool>,
    /// Root volume size in GiB, on the image's root device.
    pub disk_size_gb: Option<u32>,
    pub root_device_name: Option<String>,
}

/// One instance as skycat sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ec2Instance {
    pub id: String,
    /// pending, running, shutting-down, terminated, stopping, stopped.
    pub state: String,
    pub instance_type: String,
    pub zone: Option<String>,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    /// `instance-lifecycle: spot`.
    pub spot: bool,
    /// The spot request behind a spot instance (EC2 sets it; moto leaves it empty).
    pub spot_request_id: Option<String>,
    pub state_reason_code: Option<String>,
    pub state_reason_message: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// Why the provider says a node is gone.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeGone {
    /// The spot service interrupted it (state reason `Server.SpotInstance*`).
    SpotInterrupted { code: String },
    /// Stopped or terminated for another reason (user, scheduled event, …).
    Ended { state: String, code: Option<String> },
}

impl Ec2Instance {
    pub fn from_sdk(i: &aws_sdk_ec2::types::Instance) -> Ec2Instance {
        Ec2Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
            instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
            zone: i.placement().and_then(|p| p.availability_zone()).map(str::to_string),
            public_ip: i.public_ip_address().map(str::to_string),
            private_ip: i.private_ip_address().map(str::to_string),
            spot: i.instance_lifecycle().is_some_and(|l| l.as_str() == "spot"),
            spot_request_id: i.spot_instance_request_id().filter(|r| !r.is_empty()).map(str::to_string),
            state_reason_code: i.state_reason().and_then(|r| r.code()).filter(|c| !c.is_empty()).map(str::to_string),
            state_reason_message: i.state_reason().and_then(|r| r.message()).filter(|m| !m.is_empty()).map(str::to_string),
            tags: i
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
                .collect(),
        }
    }

    /// The provider's view of the node for the managed-jobs controller: `None` while it runs
    /// (or is starting), otherwise why it is gone. A spot instance whose state reason is one of
    /// [`SPOT_REASON_CODES`] (stopping/stopped/shutting-down/terminated) was preempted.
    pub fn preemption(&self) -> Option<NodeGone> {
        let ended = matches!(self.state.as_str(), "shutting-down" | "terminated" | "stopping" | "stopped");
        if !ended {
            return None;
        }
        match &self.state_reason_code {
            Some(code) if self.spot && SPOT_REASON_CODES.contains(&code.as_str()) => {
                Some(NodeGone::SpotInterrupted { code: code.clone() })
            }
            code => Some(NodeGone::Ended { state: self.state.clone(), code: code.clone() }),
        }
    }
}

/// An EC2 client for one region.
#[derive(Clone, Debug)]
pub struct Ec2Backend {
    client: Client,
    region: String,
}

impl Ec2Backend {
    /// The SDK's standard configuration (credentials chain, `AWS_ENDPOINT_URL[_EC2]`).
    pub async fn from_env(region: &str) -> Ec2Backend {
        let conf = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string())).load().await;
        Ec2Backend::from_conf(&conf, region)
    }

    pub fn from_conf(conf: &SdkConfig, region: &str) -> Ec2Backend {
        Ec2Backend { client: Client::new(conf), region: region.to_string() }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    fn api<E: ProvideErrorMetadata + std::error::Error + 'static>(&self, op: &'static str, e: E) -> Ec2Error {
        let code = e.code().map(str::to_string);
        // The service's own code and message when it answered; the whole chain otherwise
        // (connection refused, timeouts).
        let message = match (e.code(), e.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            _ => DisplayErrorContext(&e).to_string(),
        };
        Ec2Error::Api { op, region: self.region.clone(), code, message }
    }

    /// Imports `public_key` (OpenSSH format) as key pair `name` unless it exists already.
    pub async fn ensure_key_pair(&self, name: &str, public_key: &str) -> Result<(), Ec2Error> {
        let found = self
            .client
            .describe_key_pairs()
            .filters(Filter::builder().name("key-name").values(name).build())
            .send()
            .await
            .map_err(|e| self.api("DescribeKeyPairs", e))?;
        if found.key_pairs().iter().any(|k| k.key_name() == Some(name)) {
            return Ok(());
        }
        self.client
            .import_key_pair()
            .key_name(name)
            .public_key_material(Blob::new(public_key.trim().as_bytes().to_vec()))
            .send()
            .await
            .map_err(|e| self.api("ImportKeyPair", e))?;
        Ok(())
    }

    /// The security group `name` (created if missing, in `vpc_id` or the default VPC) with
    /// TCP 22 and every range of `ports` open to `cidr`. Returns its id.
    pub async fn ensure_security_group(
        &self,
        name: &str,
        vpc_id: Option<&str>,
        ports: &[(u16, u16)],
        cidr: &str,
    ) -> Result<String, Ec2Error> {
        let mut filters = vec![Filter::builder().name("group-name").values(name).build()];
        if let Some(v) = vpc_id {
            filters.push(Filter::builder().name("vpc-id").values(v).build());
        }
        let found = self
            .client
            .describe_security_groups()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|e| self.api("DescribeSecurityGroups", e))?;
        let (id, existing) = match found.security_groups().first() {
            Some(g) => (g.group_id().unwrap_or_default().to_string(), g.ip_permissions().to_vec()),
            None => {
                let created = self
                    .client
                    .create_security_group()
                    .group_name(name)
                    .description("skycat: SSH and the task's ports")
                    .set_vpc_id(vpc_id.map(str::to_string))
                    .tag_specifications(
                        TagSpecification::builder()
                            .resource_type(ResourceType::SecurityGroup)
                            .tags(Tag::builder().key("skycat").value("true").build())
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| self.api("CreateSecurityGroup", e))?;
                (created.group_id().unwrap_or_default().to_string(), Vec::new())
            }
        };
        let mut want: Vec<(u16, u16)> = vec![(22, 22)];
        want.extend(ports.iter().copied());
        want.sort();
        want.dedup();
        let open = |a: u16, b: u16| {
            existing.iter().any(|p| {
                p.ip_protocol() == Some("tcp")
                    && p.from_port() == Some(a as i32)
                    && p.to_port() == Some(b as i32)
                    && p.ip_ranges().iter().any(|r| r.cidr_ip() == Some(cidr))
            })
        };
        let perms: Vec<IpPermission> = want
            .into_iter()
            .filter(|(a, b)| !open(*a, *b))
            .map(|(a, b)| {
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(a as i32)
                    .to_port(b as i32)
                    .ip_ranges(IpRange::builder().cidr_ip(cidr).description("skycat").build())
                    .build()
            })
            .collect();
        if !perms.is_empty() {
            self.client
                .authorize_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(perms))
                .send()
                .await
                .map_err(|e| self.api("AuthorizeSecurityGroupIngress", e))?;
        }
        Ok(id)
    }

    /// RunInstances: `count` instances, on spot when `spec.spot` (one-time request, terminated on
    /// interruption), tagged with the cluster.
    pub async fn run_instances(&self, spec: &LaunchSpec) -> Result<Vec<Ec2Instance>, Ec2Error> {
        if spec.count == 0 {
            return Err(Ec2Error::Invalid { field: "count", message: "must be at least 1".into() });
        }
        if spec.image_id.trim().is_empty() {
            return Err(Ec2Error::Invalid { field: "image_id", message: "an AMI id is required".into() });
        }
        let mut tags = vec![
            Tag::builder().key(CLUSTER_TAG).value(&spec.cluster).build(),
            Tag::builder().key("Name").value(format!("skycat-{}", spec.cluster)).build(),
        ];
        tags.extend(spec.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()));
        let mut req = self
            .client
            .run_instances()
            .image_id(&spec.image_id)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(spec.count as i32)
            .max_count(spec.count as i32)
            .set_key_name(spec.key_name.clone())
            .tag_specifications(TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(tags)).build());
        let groups = Some(spec.security_group_ids.clone()).filter(|v| !v.is_empty());
        match (&spec.subnet_id, spec.associate_public_ip) {
            (Some(subnet), Some(public)) => {
                // The public-address choice exists only on a network interface, which then
                // carries the subnet and groups too.
                req = req.network_interfaces(
                    InstanceNetworkInterfaceSpecification::builder()
                        .device_index(0)
                        .subnet_id(subnet)
                        .set_groups(groups)
                        .associate_public_ip_address(public)
                        .delete_on_termination(true)
                        .build(),
                );
            }
            _ => {
                req = req.set_subnet_id(spec.subnet_id.clone()).set_security_group_ids(groups);
            }
        }
        if let (Some(gb), Some(dev)) = (spec.disk_size_gb, &spec.root_device_name) {
            req = req.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(dev)
                    .ebs(EbsBlockDevice::builder().volume_size(gb as i32).volume_type(VolumeType::Gp3).delete_on_termination(true).build())
                    .build(),
            );
        }
        if let Some(z) = &spec.availability_zone {
            req = req.placement(Placement::builder().availability_zone(z).build());
        }
        if spec.spot {
            req = req.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .set_max_price(spec.max_spot_price.clone())
                            .build(),
                    )
                    .build(),
            );
        }
        let out = req.send().await.map_err(|e| self.api("RunInstances", e))?;
        Ok(out.instances().iter().map(Ec2Instance::from_sdk).collect())
    }

    /// DescribeInstances of one cluster (by tag), terminated ones included.
    pub async fn describe_cluster(&self, cluster: &str) -> Result<Vec<Ec2Instance>, Ec2Error> {
        self.describe(Some(Filter::builder().name(format!("tag:{CLUSTER_TAG}")).values(cluster).build()), None).await
    }

    /// DescribeInstances by id.
    pub async fn describe_ids(&self, ids: &[String]) -> Result<Vec<Ec2Instance>, Ec2Error> {
        self.describe(None, Some(ids.to_vec())).await
    }

    async fn describe(&self, filter: Option<Filter>, ids: Option<Vec<String>>) -> Result<Vec<Ec2Instance>, Ec2Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_instances()
                .set_filters(filter.clone().map(|f| vec![f]))
                .set_instance_ids(ids.clone())
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| self.api("DescribeInstances", e))?;
            for r in page.reservations() {
                out.extend(r.instances().iter().map(Ec2Instance::from_sdk));
            }
            token = page.next_token().map(str::to_string).filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// StopInstances; returns (id, new state).
    pub async fn stop(&self, ids: &[String]) -> Result<Vec<(String, String)>, Ec2Error> {
        let out = self.client.stop_instances().set_instance_ids(Some(ids.to_vec())).send().await.map_err(|e| self.api("StopInstances", e))?;
        Ok(out.stopping_instances().iter().map(change).collect())
    }

    /// StartInstances; returns (id, new state).
    pub async fn start(&self, ids: &[String]) -> Result<Vec<(String, String)>, Ec2Error> {
        let out = self.client.start_instances().set_instance_ids(Some(ids.to_vec())).send().await.map_err(|e| self.api("StartInstances", e))?;
        Ok(out.starting_instances().iter().map(change).collect())
    }

    /// TerminateInstances; returns (id, new state).
    pub async fn terminate(&self, ids: &[String]) -> Result<Vec<(String, String)>, Ec2Error> {
        let out = self
            .client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| self.api("TerminateInstances", e))?;
        Ok(out.terminating_instances().iter().map(change).collect())
    }
}

/// A subnet skycat can launch into.
#[derive(Debug, Clone, PartialEq)]
pub struct Ec2Subnet {
    pub id: String,
    pub vpc_id: String,
    pub zone: String,
    pub cidr: String,
}

/// An image's facts that a launch needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Ec2Image {
    pub id: String,
    pub name: String,
    pub root_device_name: Option<String>,
    pub architecture: Option<String>,
}

impl Ec2Backend {
    /// The VPC tagged `Name=name`, or the region's default VPC when `name` is None.
    pub async fn find_vpc(&self, name: Option<&str>) -> Result<Option<String>, Ec2Error> {
        let filter = match name {
            Some(n) => Filter::builder().name("tag:Name").values(n).build(),
            None => Filter::builder().name("isDefault").values("true").build(),
        };
        let out = self.client.describe_vpcs().filters(filter).send().await.map_err(|e| self.api("DescribeVpcs", e))?;
        Ok(out.vpcs().iter().find_map(|v| v.vpc_id().map(str::to_string)))
    }

    /// The subnets of `vpc_id`, in `zone` when given, sorted by zone then id.
    pub async fn subnets(&self, vpc_id: &str, zone: Option<&str>) -> Result<Vec<Ec2Subnet>, Ec2Error> {
        let mut filters = vec![Filter::builder().name("vpc-id").values(vpc_id).build()];
        if let Some(z) = zone {
            filters.push(Filter::builder().name("availability-zone").values(z).build());
        }
        let out = self
            .client
            .describe_subnets()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|e| self.api("DescribeSubnets", e))?;
        let mut v: Vec<Ec2Subnet> = out
            .subnets()
            .iter()
            .map(|s| Ec2Subnet {
                id: s.subnet_id().unwrap_or_default().to_string(),
                vpc_id: s.vpc_id().unwrap_or_default().to_string(),
                zone: s.availability_zone().unwrap_or_default().to_string(),
                cidr: s.cidr_block().unwrap_or_default().to_string(),
            })
            .filter(|s| !s.id.is_empty())
            .collect();
        v.sort_by(|a, b| a.zone.cmp(&b.zone).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// One image by id.
    pub async fn image(&self, id: &str) -> Result<Option<Ec2Image>, Ec2Error> {
        let out = self.client.describe_images().image_ids(id).send().await.map_err(|e| self.api("DescribeImages", e))?;
        Ok(out.images().first().map(image_of))
    }

    /// The newest image of `owner` whose name matches `name_pattern` (EC2 wildcards).
    pub async fn newest_image(&self, owner: &str, name_pattern: &str) -> Result<Option<Ec2Image>, Ec2Error> {
        let out = self
            .client
            .describe_images()
            .owners(owner)
            .filters(Filter::builder().name("name").values(name_pattern).build())
            .filters(Filter::builder().name("state").values("available").build())
            .send()
            .await
            .map_err(|e| self.api("DescribeImages", e))?;
        let newest = out.images().iter().max_by(|a, b| a.creation_date().unwrap_or("").cmp(b.creation_date().unwrap_or("")));
        Ok(newest.map(image_of))
    }

    /// Deletes a security group by id.
    pub async fn delete_security_group(&self, id: &str) -> Result<(), Ec2Error> {
        self.client
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .map_err(|e| self.api("DeleteSecurityGroup", e))?;
        Ok(())
    }

    /// The id of the security group `name` in `vpc_id`, if it exists.
    pub async fn security_group_id(&self, name: &str, vpc_id: Option<&str>) -> Result<Option<String>, Ec2Error> {
        let mut filters = vec![Filter::builder().name("group-name").values(name).build()];
        if let Some(v) = vpc_id {
            filters.push(Filter::builder().name("vpc-id").values(v).build());
        }
        let out = self
            .client
            .describe_security_groups()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|e| self.api("DescribeSecurityGroups", e))?;
        Ok(out.security_groups().iter().find_map(|g| g.group_id().map(str::to_string)))
    }

    /// The account's zone name for a zone id (`use1-az1` → `us-east-1b`): catalogs carry zone
    /// ids, which mean the same everywhere, while names are shuffled per account.
    pub async fn zone_name(&self, zone_id: &str) -> Result<Option<String>, Ec2Error> {
        let out = self
            .client
            .describe_availability_zones()
            .zone_ids(zone_id)
            .send()
            .await
            .map_err(|e| self.api("DescribeAvailabilityZones", e))?;
        Ok(out.availability_zones().iter().find_map(|z| z.zone_name().map(str::to_string)))
    }

    /// DescribeRegions: the cheapest authenticated read-only call (for `skycat check`).
    pub async fn regions(&self) -> Result<Vec<String>, Ec2Error> {
        let out = self.client.describe_regions().send().await.map_err(|e| self.api("DescribeRegions", e))?;
        Ok(out.regions().iter().filter_map(|r| r.region_name().map(str::to_string)).collect())
    }
}

fn image_of(i: &aws_sdk_ec2::types::Image) -> Ec2Image {
    Ec2Image {
        id: i.image_id().unwrap_or_default().to_string(),
        name: i.name().unwrap_or_default().to_string(),
        root_device_name: i.root_device_name().map(str::to_string),
        architecture: i.architecture().map(|a| a.as_str().to_string()),
    }
}

fn change(c: &aws_sdk_ec2::types::InstanceStateChange) -> (String, String) {
    (
        c.instance_id().unwrap_or_default().to_string(),
        c.current_state().and_then(|s| s.name()).map(|n: &InstanceStateName| n.as_str().to_string()).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{Instance, InstanceLifecycleType, InstanceState, StateReason};

    fn inst(state: InstanceStateName, lifecycle: Option<InstanceLifecycleType>, code: Option<&str>) -> Ec2Instance {
        let mut b = Instance::builder().instance_id("i-1").state(InstanceState::builder().name(state).build());
        if let Some(l) = lifecycle {
            b = b.instance_lifecycle(l);
        }
        if let Some(c) = code {
            b = b.state_reason(StateReason::builder().code(c).message("m").build());
        }
        Ec2Instance::from_sdk(&b.build())
    }

    #[test]
    fn spot_interruption_is_read_from_the_instance_state() {
        let spot = Some(InstanceLifecycleType::Spot);
        assert_eq!(inst(InstanceStateName::Running, spot.clone(), None).preemption(), None);
        assert_eq!(
            inst(InstanceStateName::Terminated, spot.clone(), Some("Server.SpotInstanceTermination")).preemption(),
            Some(NodeGone::SpotInterrupted { code: "Server.SpotInstanceTermination".into() })
        );
        assert_eq!(
            inst(InstanceStateName::Stopped, spot.clone(), Some("Server.SpotInstanceShutdown")).preemption(),
            Some(NodeGone::SpotInterrupted { code: "Server.SpotInstanceShutdown".into() })
        );
        // A user's terminate of a spot instance, or a spot-like code on on-demand, is no preemption.
        assert!(matches!(
            inst(InstanceStateName::Terminated, spot, Some("Client.UserInitiatedShutdown")).preemption(),
            Some(NodeGone::Ended { .. })
        ));
        assert!(matches!(
            inst(InstanceStateName::ShuttingDown, None, Some("Server.SpotInstanceTermination")).preemption(),
            Some(NodeGone::Ended { .. })
        ));
    }
}
