#!/usr/bin/env python3
"""Generate a schema-faithful AWS EC2 bulk offer CSV (`index.csv` of one region).

Layout as AWS serves it (see /work/shared/api-formats/aws-bulk-offer.md): five quoted
2-field preamble records, the quoted 91-column header of the Sept-2025 files, then rows where
every non-empty field is double-quoted and empty fields are bare.

The mix follows a real region file: per instance type and operating system, one OnDemand row
per tenancy (Shared, Dedicated, Host) and capacity status (Used, UnusedCapacityReservation,
AllocatedCapacityReservation), plus Reserved terms (1yr/3yr x No/Partial/All Upfront x
standard/convertible, with the upfront-fee Quantity rows). Linux/Shared/Used OnDemand rows are a
few percent of the file, as in the real one.

usage: gen-aws-offer-csv.py OUT.csv [--size-mb 100] [--region us-east-1] [--seed 1]
"""
import argparse
import random

HEADER = ["SKU", "OfferTermCode", "RateCode", "TermType", "PriceDescription", "EffectiveDate",
    "StartingRange", "EndingRange", "Unit", "PricePerUnit", "Currency", "RelatedTo",
    "LeaseContractLength", "PurchaseOption", "OfferingClass", "Product Family", "serviceCode",
    "Location", "Location Type", "Instance Type", "Current Generation", "Instance Family", "vCPU",
    "Physical Processor", "Clock Speed", "Memory", "Storage", "Network Performance",
    "Processor Architecture", "Storage Media", "Volume Type", "Max Volume Size", "Max IOPS/volume",
    "Max IOPS Burst Performance", "Max throughput/volume", "Provisioned", "Tenancy", "EBS Optimized",
    "Operating System", "License Model", "Group", "Group Description", "Transfer Type",
    "From Location", "From Location Type", "To Location", "To Location Type", "usageType",
    "operation", "AvailabilityZone", "CapacityStatus", "ClassicNetworkingSupport",
    "Dedicated EBS Throughput", "ECU", "Elastic Graphics Type", "Enhanced Networking Supported",
    "From Region Code", "GPU", "GPU Memory", "Instance", "Instance Capacity - 10xlarge",
    "Instance Capacity - 12xlarge", "Instance Capacity - 16xlarge", "Instance Capacity - 18xlarge",
    "Instance Capacity - 24xlarge", "Instance Capacity - 2xlarge", "Instance Capacity - 32xlarge",
    "Instance Capacity - 4xlarge", "Instance Capacity - 8xlarge", "Instance Capacity - 9xlarge",
    "Instance Capacity - large", "Instance Capacity - medium", "Instance Capacity - metal",
    "Instance Capacity - xlarge", "instanceSKU", "Intel AVX2 Available", "Intel AVX Available",
    "Intel Turbo Available", "MarketOption", "Normalization Size Factor", "Physical Cores",
    "Pre Installed S/W", "Processor Features", "Product Type", "Region Code", "Resource Type",
    "serviceName", "SnapshotArchiveFeeType", "To Region Code", "Volume API Name",
    "VPCNetworkingSupport"]
assert len(HEADER) == 91

LOCATIONS = {"us-east-1": "US East (N. Virginia)", "us-west-2": "US West (Oregon)",
             "eu-west-1": "EU (Ireland)", "ap-south-1": "Asia Pacific (Mumbai)"}
PREFIX = {"us-east-1": "", "us-west-2": "USW2-", "eu-west-1": "EU-", "ap-south-1": "APS3-"}

# (type, family label, vcpu, memory GiB, gpu count or None, processor, on-demand $/h)
TYPES = [
    ("m5.large", "General purpose", 2, 8, None, "Intel Xeon Platinum 8175", 0.096),
    ("m5.xlarge", "General purpose", 4, 16, None, "Intel Xeon Platinum 8175", 0.192),
    ("m5.2xlarge", "General purpose", 8, 32, None, "Intel Xeon Platinum 8175", 0.384),
    ("m5.4xlarge", "General purpose", 16, 64, None, "Intel Xeon Platinum 8175", 0.768),
    ("c5.large", "Compute optimized", 2, 4, None, "Intel Xeon Platinum 8124M", 0.085),
    ("c5.2xlarge", "Compute optimized", 8, 16, None, "Intel Xeon Platinum 8124M", 0.34),
    ("r5.large", "Memory optimized", 2, 16, None, "Intel Xeon Platinum 8175", 0.126),
    ("m7g.large", "General purpose", 2, 8, None, "AWS Graviton3 Processor", 0.0816),
    ("m7g.xlarge", "General purpose", 4, 16, None, "AWS Graviton3 Processor", 0.1632),
    ("t3.micro", "General purpose", 2, 1, None, "Intel Skylake E5 2686 v5", 0.0104),
    ("g4dn.xlarge", "GPU instance", 4, 16, 1, "Intel Xeon Platinum 8259CL", 0.526),
    ("g4dn.12xlarge", "GPU instance", 48, 192, 4, "Intel Xeon Platinum 8259CL", 3.912),
    ("g5.xlarge", "GPU instance", 4, 16, 1, "AMD EPYC 7R32", 1.006),
    ("g5.12xlarge", "GPU instance", 48, 192, 4, "AMD EPYC 7R32", 5.672),
    ("g5.48xlarge", "GPU instance", 192, 768, 8, "AMD EPYC 7R32", 16.288),
    ("g6.xlarge", "GPU instance", 4, 16, 1, "AMD EPYC 7R13 Processor", 0.8048),
    ("g6e.xlarge", "GPU instance", 4, 32, 1, "AMD EPYC 7R13 Processor", 1.861),
    ("p3.2xlarge", "GPU instance", 8, 61, 1, "Intel Xeon E5-2686 v4 (Broadwell)", 3.06),
    ("p4d.24xlarge", "GPU instance", 96, 1152, 8, "Intel Xeon Platinum 8275L", 32.7726),
    ("p5.48xlarge", "GPU instance", 192, 2048, 8, "AMD EPYC 7R13 Processor", 98.32),
]

OSES = [("Linux", "RunInstances", "NA", "No License required"),
        ("Windows", "RunInstances:0002", "NA", "No License required"),
        ("RHEL", "RunInstances:0010", "NA", "No License required"),
        ("SUSE", "RunInstances:000g", "NA", "No License required"),
        ("Windows", "RunInstances:0102", "SQL Ent", "No License required"),
        ("Linux", "RunInstances:0004", "SQL Std", "No License required"),
        ("Windows", "RunInstances:0800", "NA", "Bring your own license")]
TENANCIES = [("Shared", "BoxUsage"), ("Dedicated", "DedicatedUsage"), ("Host", "HostBoxUsage")]
CAPACITY = [("Used", ""), ("UnusedCapacityReservation", "UnusedBox"),
            ("AllocatedCapacityReservation", "Reservation")]
RESERVED = [(l, p, c) for l in ("1yr", "3yr") for p in ("No Upfront", "Partial Upfront", "All Upfront")
            for c in ("standard", "convertible")]


def q(v):
    return "" if v is None or v == "" else '"' + str(v).replace('"', '""') + '"'


def sku(rng):
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(16))


def row(f):
    return ",".join(q(f.get(h)) for h in HEADER) + "\n"


def product(region, t, os_, tenancy, cap, location_type="AWS Region", region_code=None):
    (itype, fam, vcpu, mem, gpu, proc, _price) = t
    (osname, op, sw, lic) = os_
    (ten, usage) = tenancy
    (capname, capusage) = cap
    usage_prefix = capusage or usage
    return {
        "Product Family": "Compute Instance", "serviceCode": "AmazonEC2",
        "Location": LOCATIONS.get(region, region), "Location Type": location_type,
        "Instance Type": itype, "Current Generation": "Yes", "Instance Family": fam,
        "vCPU": vcpu, "Physical Processor": proc, "Clock Speed": "3.1 GHz", "Memory": f"{mem} GiB",
        "Storage": "EBS only", "Network Performance": "Up to 10 Gigabit",
        "Processor Architecture": "64-bit", "Tenancy": ten, "Operating System": osname,
        "License Model": lic, "usageType": f"{PREFIX.get(region, '')}{usage_prefix}:{itype}",
        "operation": op, "AvailabilityZone": "NA", "CapacityStatus": capname,
        "ClassicNetworkingSupport": "false", "Dedicated EBS Throughput": "Up to 4750 Mbps",
        "ECU": "NA", "Enhanced Networking Supported": "Yes",
        "GPU": gpu if gpu else None, "GPU Memory": "NA",
        "Intel AVX2 Available": "Yes", "Intel AVX Available": "Yes", "Intel Turbo Available": "Yes",
        "MarketOption": "OnDemand", "Normalization Size Factor": "4", "Pre Installed S/W": sw,
        "Processor Features": "Intel AVX; Intel AVX2; Intel AVX512; Intel Turbo",
        "Region Code": region_code or region, "serviceName": "Amazon Elastic Compute Cloud",
        "VPCNetworkingSupport": "true",
    }


def ondemand(rng, region, t, os_, tenancy, cap, price, **kw):
    s = sku(rng)
    f = product(region, t, os_, tenancy, cap, **kw)
    f.update({"SKU": s, "OfferTermCode": "JRTCKXETXF", "RateCode": f"{s}.JRTCKXETXF.6YS6EN2CT7",
              "TermType": "OnDemand",
              "PriceDescription": f"${price:.4f} per On Demand {os_[0]} {t[0]} Instance Hour",
              "EffectiveDate": "2025-09-01", "StartingRange": "0", "EndingRange": "Inf",
              "Unit": "Hrs", "PricePerUnit": f"{price:.10f}", "Currency": "USD"})
    return row(f), s


def reserved(rng, s, region, t, os_, tenancy, cap, price, term):
    (lease, purchase, klass) = term
    out = []
    code = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(10))
    f = product(region, t, os_, tenancy, cap)
    disc = {"No Upfront": 0.63, "Partial Upfront": 0.31, "All Upfront": 0.0}[purchase]
    f.update({"SKU": s, "OfferTermCode": code, "RateCode": f"{s}.{code}.6YS6EN2CT7",
              "TermType": "Reserved",
              "PriceDescription": f"{os_[0]}/UNIX (Amazon VPC), {t[0]} reserved instance applied",
              "EffectiveDate": "2025-09-01", "StartingRange": "0", "EndingRange": "Inf",
              "Unit": "Hrs", "PricePerUnit": f"{price * disc:.10f}", "Currency": "USD",
              "LeaseContractLength": lease, "PurchaseOption": purchase, "OfferingClass": klass})
    out.append(row(f))
    if purchase != "No Upfront":
        g = dict(f)
        years = 1 if lease == "1yr" else 3
        g.update({"RateCode": f"{s}.{code}.2TG2D8R56U", "PriceDescription": "Upfront Fee",
                  "StartingRange": None, "EndingRange": None, "Unit": "Quantity",
                  "PricePerUnit": f"{price * 8760 * years * 0.4:.10f}"})
        out.append(row(g))
    return out


def preamble(version="20250912225308", date="2025-09-12T22:53:08Z"):
    lines = [("FormatVersion", "v1.0"),
             ("Disclaimer", "This pricing list is for informational purposes only. All prices are subject to the additional terms included in the pricing pages on http://aws.amazon.com. All Free Tier prices are also subject to the terms included at https://aws.amazon.com/free/"),
             ("Publication Date", date), ("Version", version), ("OfferCode", "AmazonEC2")]
    return "".join(f'"{k}","{v}"\n' for k, v in lines) + ",".join(f'"{h}"' for h in HEADER) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size-mb", type=float, default=100.0)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    target = int(a.size_mb * 1024 * 1024)
    written = 0
    kept = 0
    rows = 0
    with open(a.out, "w", newline="") as fh:
        p = preamble()
        fh.write(p)
        written += len(p.encode())
        gen = 0
        while written < target:
            # Each pass adds every type again under a new generation suffix, like the many
            # families and sizes of a real file.
            for t in TYPES:
                name = t[0] if gen == 0 else f"{t[0].split('.')[0]}x{gen}.{t[0].split('.')[1]}"
                tt = (name,) + t[1:]
                for os_ in OSES:
                    for ten in TENANCIES:
                        for cap in CAPACITY:
                            price = t[6] * (1.0 + 0.1 * OSES.index(os_)) * (1.1 if ten[0] != "Shared" else 1.0)
                            line, s = ondemand(rng, a.region, tt, os_, ten, cap, price)
                            fh.write(line)
                            written += len(line.encode())
                            rows += 1
                            if os_[0] == "Linux" and os_[2] == "NA" and ten[0] == "Shared" and cap[0] == "Used":
                                kept += 1
                            if cap[0] == "Used":
                                for term in RESERVED:
                                    for r in reserved(rng, s, a.region, tt, os_, ten, cap, price, term):
                                        fh.write(r)
                                        written += len(r.encode())
                                        rows += 1
                if written >= target:
                    break
            gen += 1
    print(f"wrote {a.out}: {written / 1e6:.1f} MB, {rows} rows, {kept} Linux/Shared/Used on-demand rows")


if __name__ == "__main__":
    main()
