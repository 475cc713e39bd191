//! The few nftables operations the kernel datapath needs, through the
//! `nft` tool (Debian's `nftables` package): load a script atomically,
//! read named counters back, delete a table.

use std::collections::BTreeMap;
use std::io;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Whether `nft` is installed and can talk to nf_tables in this
/// namespace; the error says which of the two is missing.
pub async fn probe() -> Result<(), String> {
    let out = Command::new("nft").arg("list").arg("tables").stdin(Stdio::null()).output().await;
    match out {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err("the nft tool is not installed (Debian package nftables)".into())
        }
        Err(e) => Err(format!("cannot run nft: {e}")),
        Ok(o) if !o.status.success() => {
            Err(format!("nft cannot list tables here: {}", String::from_utf8_lossy(&o.stderr).trim()))
        }
        Ok(_) => Ok(()),
    }
}

/// Loads `script` with `nft -f -`: all of it or nothing.
pub async fn load(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .arg("-f")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                io::Error::new(e.kind(), "the nft tool is not installed (Debian package nftables)".to_string())
            }
            _ => io::Error::new(e.kind(), format!("cannot run nft: {e}")),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "nft refused the script: {}\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Deletes an ip6 table if it exists; returns whether it did.
pub async fn delete_table(name: &str) -> io::Result<bool> {
    let out = Command::new("nft")
        .args(["list", "table", "ip6", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    if !out.success() {
        return Ok(false);
    }
    load(&format!("delete table ip6 {name}\n")).await?;
    Ok(true)
}

/// The packet count of every named counter of an ip6 table.
pub async fn counters(table: &str) -> io::Result<BTreeMap<String, u64>> {
    let out = Command::new("nft")
        .args(["-j", "list", "counters", "table", "ip6", table])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run nft: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft cannot list the counters of {table}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| io::Error::other(format!("nft's JSON for the counters of {table}: {e}")))?;
    let mut counters = BTreeMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let c = &item["counter"];
        if let (Some(name), Some(packets)) = (c["name"].as_str(), c["packets"].as_u64()) {
            counters.insert(name.to_string(), packets);
        }
    }
    Ok(counters)
}
