//! The request schemas the Azure EMULATION checks PUT bodies against: the properties of the
//! published ARM models (azure-rest-api-specs, Microsoft.Resources 2024-03-01 `ResourceGroup`,
//! Microsoft.Network 2024-05-01 `VirtualNetwork`, `NetworkSecurityGroup`, `PublicIPAddress`,
//! `NetworkInterface`, Microsoft.Compute 2024-07-01 `VirtualMachine`), restricted to what a
//! launch uses plus the common optional ones. ARM ignores nothing silently for skycat's purposes:
//! an unknown member is `InvalidRequestContent` (as ARM's deserializer answers), a missing
//! required one `InvalidParameter` with its `target`, a wrong enum value `InvalidParameter`.

use serde_json::Value;

/// A JSON schema node.
pub enum S {
    Str,
    Int,
    Num,
    Bool,
    /// A string from a fixed set (ARM enums compare case-insensitively).
    Enum(&'static [&'static str]),
    /// `{"id": "/subscriptions/…"}`.
    Ref,
    /// String → string (tags).
    StrMap,
    Arr(&'static S),
    /// (name, required, schema), and the model's name for messages.
    Obj(&'static str, &'static [(&'static str, bool, &'static S)]),
}

/// One refusal: ARM's code, message and target.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub target: Option<String>,
}

pub fn check(v: &Value, s: &S, path: &str) -> Result<(), Refusal> {
    let content = |what: String| Refusal {
        code: "InvalidRequestContent",
        message: format!("The request content was invalid and could not be deserialized: '{what} Path '{path}'.'."),
        target: None,
    };
    match s {
        S::Str => v.as_str().map(|_| ()).ok_or_else(|| content(format!("Error converting value {v} to type 'System.String'."))),
        S::Int => v.as_i64().map(|_| ()).ok_or_else(|| content(format!("Could not convert {v} to integer."))),
        S::Num => v.as_f64().map(|_| ()).ok_or_else(|| content(format!("Could not convert {v} to number."))),
        S::Bool => v.as_bool().map(|_| ()).ok_or_else(|| content(format!("Could not convert {v} to boolean."))),
        S::Enum(values) => {
            let got = v.as_str().ok_or_else(|| content(format!("Error converting value {v} to an enum.")))?;
            if values.iter().any(|e| e.eq_ignore_ascii_case(got)) {
                Ok(())
            } else {
                Err(Refusal {
                    code: "InvalidParameter",
                    message: format!("The value '{got}' of parameter '{path}' is not allowed. Allowed values are: {}.", values.join(", ")),
                    target: Some(path.to_string()),
                })
            }
        }
        S::Ref => {
            let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
            check(v, &REF, path)?;
            if id.starts_with("/subscriptions/") {
                Ok(())
            } else {
                Err(Refusal {
                    code: "LinkedInvalidPropertyId",
                    message: format!("Property id '{id}' at path '{path}.id' is invalid. Expect fully qualified resource Id that start with '/subscriptions/{{subscriptionId}}'."),
                    target: Some(format!("{path}.id")),
                })
            }
        }
        S::StrMap => {
            let o = v.as_object().ok_or_else(|| content("Expected an object.".into()))?;
            for (k, x) in o {
                check(x, &S::Str, &join(path, k))?;
            }
            Ok(())
        }
        S::Arr(item) => {
            let a = v.as_array().ok_or_else(|| content(format!("Cannot deserialize {v} into an array.")))?;
            for (i, x) in a.iter().enumerate() {
                check(x, item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        S::Obj(model, fields) => {
            let o = v.as_object().ok_or_else(|| content(format!("Cannot deserialize {v} into '{model}'.")))?;
            for k in o.keys() {
                if !fields.iter().any(|f| f.0 == k) {
                    return Err(content(format!("Could not find member '{k}' on object of type '{model}'.")));
                }
            }
            for (name, required, schema) in fields.iter() {
                match o.get(*name) {
                    Some(Value::Null) | None if *required => {
                        return Err(Refusal {
                            code: "InvalidParameter",
                            message: format!("Required parameter '{name}' is missing (null)."),
                            target: Some(join(path, name)),
                        })
                    }
                    Some(Value::Null) | None => {}
                    Some(x) => check(x, schema, &join(path, name))?,
                }
            }
            Ok(())
        }
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

static REF: S = S::Obj("SubResource", &[("id", true, &S::Str)]);

pub static RESOURCE_GROUP: S = S::Obj(
    "ResourceGroup",
    &[("location", true, &S::Str), ("tags", false, &S::StrMap), ("managedBy", false, &S::Str), ("properties", false, &S::Obj("ResourceGroupProperties", &[]))],
);

static SUBNET: S = S::Obj(
    "Subnet",
    &[
        ("name", true, &S::Str),
        ("properties", true, &S::Obj("SubnetPropertiesFormat", &[("addressPrefix", true, &S::Str), ("networkSecurityGroup", false, &S::Ref)])),
    ],
);

pub static VNET: S = S::Obj(
    "VirtualNetwork",
    &[
        ("location", true, &S::Str),
        ("tags", false, &S::StrMap),
        (
            "properties",
            true,
            &S::Obj(
                "VirtualNetworkPropertiesFormat",
                &[
                    ("addressSpace", true, &S::Obj("AddressSpace", &[("addressPrefixes", true, &S::Arr(&S::Str))])),
                    ("subnets", false, &S::Arr(&SUBNET)),
                ],
            ),
        ),
    ],
);

static RULE: S = S::Obj(
    "SecurityRule",
    &[
        ("name", true, &S::Str),
        (
            "properties",
            true,
            &S::Obj(
                "SecurityRulePropertiesFormat",
                &[
                    ("description", false, &S::Str),
                    ("protocol", true, &S::Enum(&["Tcp", "Udp", "Icmp", "Esp", "*", "Ah"])),
                    ("sourcePortRange", false, &S::Str),
                    ("destinationPortRange", false, &S::Str),
                    ("sourceAddressPrefix", false, &S::Str),
                    ("destinationAddressPrefix", false, &S::Str),
                    ("access", true, &S::Enum(&["Allow", "Deny"])),
                    ("priority", true, &S::Int),
                    ("direction", true, &S::Enum(&["Inbound", "Outbound"])),
                ],
            ),
        ),
    ],
);

pub static NSG: S = S::Obj(
    "NetworkSecurityGroup",
    &[
        ("location", true, &S::Str),
        ("tags", false, &S::StrMap),
        ("properties", false, &S::Obj("NetworkSecurityGroupPropertiesFormat", &[("securityRules", false, &S::Arr(&RULE))])),
    ],
);

pub static PUBLIC_IP: S = S::Obj(
    "PublicIPAddress",
    &[
        ("location", true, &S::Str),
        ("tags", false, &S::StrMap),
        ("zones", false, &S::Arr(&S::Str)),
        ("sku", false, &S::Obj("PublicIPAddressSku", &[("name", true, &S::Enum(&["Basic", "Standard"])), ("tier", false, &S::Enum(&["Regional", "Global"]))])),
        (
            "properties",
            false,
            &S::Obj(
                "PublicIPAddressPropertiesFormat",
                &[
                    ("publicIPAllocationMethod", false, &S::Enum(&["Static", "Dynamic"])),
                    ("publicIPAddressVersion", false, &S::Enum(&["IPv4", "IPv6"])),
                    ("idleTimeoutInMinutes", false, &S::Int),
                ],
            ),
        ),
    ],
);

static IP_CONFIG: S = S::Obj(
    "NetworkInterfaceIPConfiguration",
    &[
        ("name", true, &S::Str),
        (
            "properties",
            true,
            &S::Obj(
                "NetworkInterfaceIPConfigurationPropertiesFormat",
                &[
                    ("privateIPAllocationMethod", false, &S::Enum(&["Static", "Dynamic"])),
                    ("privateIPAddress", false, &S::Str),
                    ("subnet", true, &S::Ref),
                    ("publicIPAddress", false, &S::Ref),
                    ("primary", false, &S::Bool),
                ],
            ),
        ),
    ],
);

pub static NIC: S = S::Obj(
    "NetworkInterface",
    &[
        ("location", true, &S::Str),
        ("tags", false, &S::StrMap),
        (
            "properties",
            true,
            &S::Obj(
                "NetworkInterfacePropertiesFormat",
                &[
                    ("networkSecurityGroup", false, &S::Ref),
                    ("ipConfigurations", true, &S::Arr(&IP_CONFIG)),
                    ("enableAcceleratedNetworking", false, &S::Bool),
                ],
            ),
        ),
    ],
);

static SSH_KEY: S = S::Obj("SshPublicKey", &[("path", true, &S::Str), ("keyData", true, &S::Str)]);

pub static VM: S = S::Obj(
    "VirtualMachine",
    &[
        ("location", true, &S::Str),
        ("tags", false, &S::StrMap),
        ("zones", false, &S::Arr(&S::Str)),
        (
            "properties",
            true,
            &S::Obj(
                "VirtualMachineProperties",
                &[
                    ("hardwareProfile", true, &S::Obj("HardwareProfile", &[("vmSize", true, &S::Str)])),
                    (
                        "storageProfile",
                        true,
                        &S::Obj(
                            "StorageProfile",
                            &[
                                (
                                    "imageReference",
                                    true,
                                    &S::Obj(
                                        "ImageReference",
                                        &[
                                            ("publisher", false, &S::Str),
                                            ("offer", false, &S::Str),
                                            ("sku", false, &S::Str),
                                            ("version", false, &S::Str),
                                            ("id", false, &S::Str),
                                        ],
                                    ),
                                ),
                                (
                                    "osDisk",
                                    true,
                                    &S::Obj(
                                        "OSDisk",
                                        &[
                                            ("name", false, &S::Str),
                                            ("createOption", true, &S::Enum(&["FromImage", "Empty", "Attach", "Copy", "Restore"])),
                                            ("diskSizeGB", false, &S::Int),
                                            ("caching", false, &S::Enum(&["None", "ReadOnly", "ReadWrite"])),
                                            ("deleteOption", false, &S::Enum(&["Delete", "Detach"])),
                                            (
                                                "managedDisk",
                                                false,
                                                &S::Obj(
                                                    "ManagedDiskParameters",
                                                    &[(
                                                        "storageAccountType",
                                                        false,
                                                        &S::Enum(&["Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "UltraSSD_LRS", "Premium_ZRS", "StandardSSD_ZRS", "PremiumV2_LRS"]),
                                                    )],
                                                ),
                                            ),
                                        ],
                                    ),
                                ),
                            ],
                        ),
                    ),
                    (
                        "osProfile",
                        true,
                        &S::Obj(
                            "OSProfile",
                            &[
                                ("computerName", true, &S::Str),
                                ("adminUsername", true, &S::Str),
                                ("adminPassword", false, &S::Str),
                                ("customData", false, &S::Str),
                                (
                                    "linuxConfiguration",
                                    false,
                                    &S::Obj(
                                        "LinuxConfiguration",
                                        &[
                                            ("disablePasswordAuthentication", false, &S::Bool),
                                            ("ssh", false, &S::Obj("SshConfiguration", &[("publicKeys", false, &S::Arr(&SSH_KEY))])),
                                        ],
                                    ),
                                ),
                            ],
                        ),
                    ),
                    (
                        "networkProfile",
                        true,
                        &S::Obj(
                            "NetworkProfile",
                            &[(
                                "networkInterfaces",
                                true,
                                &S::Arr(&S::Obj(
                                    "NetworkInterfaceReference",
                                    &[
                                        ("id", true, &S::Str),
                                        (
                                            "properties",
                                            false,
                                            &S::Obj(
                                                "NetworkInterfaceReferenceProperties",
                                                &[("primary", false, &S::Bool), ("deleteOption", false, &S::Enum(&["Delete", "Detach"]))],
                                            ),
                                        ),
                                    ],
                                )),
                            )],
                        ),
                    ),
                    ("priority", false, &S::Enum(&["Regular", "Low", "Spot"])),
                    ("evictionPolicy", false, &S::Enum(&["Deallocate", "Delete"])),
                    ("billingProfile", false, &S::Obj("BillingProfile", &[("maxPrice", false, &S::Num)])),
                    ("userData", false, &S::Str),
                ],
            ),
        ),
    ],
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_missing_and_enum_values_are_refused() {
        let ok = json!({"location": "eastus", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}});
        assert_eq!(check(&ok, &PUBLIC_IP, ""), Ok(()));
        let unknown = json!({"location": "eastus", "properties": {"allocation": "Static"}});
        let e = check(&unknown, &PUBLIC_IP, "").unwrap_err();
        assert_eq!(e.code, "InvalidRequestContent");
        assert!(e.message.contains("'allocation'") && e.message.contains("PublicIPAddressPropertiesFormat"), "{e:?}");
        let e = check(&json!({"sku": {"name": "Standard"}}), &PUBLIC_IP, "").unwrap_err();
        assert_eq!((e.code, e.target.as_deref()), ("InvalidParameter", Some("location")));
        let e = check(&json!({"location": "x", "sku": {"name": "Premium"}}), &PUBLIC_IP, "").unwrap_err();
        assert_eq!((e.code, e.target.as_deref()), ("InvalidParameter", Some("sku.name")));
    }
}
