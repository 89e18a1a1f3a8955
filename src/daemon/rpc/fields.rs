//! `torrent-get`'s fields, written straight into the response: a thousand
//! torrents with the web client's two dozen fields take no intermediate
//! JSON tree.

use std::io::Write;

use serde::Serialize;

use crate::daemon::engine::Engine;
use crate::daemon::state::StateDir;
use crate::daemon::table::{Entry, Run};
use crate::torrent::PeerInfo;
use crate::tracker::client::TrackerStat;

macro_rules! fields {
    ($($name:literal => $variant:ident,)*) => {
        /// A field name `torrent-get` knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Field { $($variant,)* }

        impl Field {
            /// Every field, in the order of the list above.
            pub const ALL: &[Field] = &[$(Field::$variant,)*];

            pub fn parse(name: &str) -> Option<Field> {
                match name {
                    $($name => Some(Field::$variant),)*
                    _ => None,
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $(Field::$variant => $name,)*
                }
            }
        }
    };
}

fields! {
    "activityDate" => ActivityDate,
    "addedDate" => AddedDate,
    "availability" => Availability,
    "bandwidthPriority" => BandwidthPriority,
    "comment" => Comment,
    "corruptEver" => CorruptEver,
    "creator" => Creator,
    "dateCreated" => DateCreated,
    "desiredAvailable" => DesiredAvailable,
    "doneDate" => DoneDate,
    "downloadDir" => DownloadDir,
    "downloadedEver" => DownloadedEver,
    "downloadLimit" => DownloadLimit,
    "downloadLimited" => DownloadLimited,
    "editDate" => EditDate,
    "error" => Error,
    "errorString" => ErrorString,
    "eta" => Eta,
    "etaIdle" => EtaIdle,
    "file-count" => FileCount,
    "files" => Files,
    "fileStats" => FileStats,
    "group" => Group,
    "hashString" => HashString,
    "haveUnchecked" => HaveUnchecked,
    "haveValid" => HaveValid,
    "honorsSessionLimits" => HonorsSessionLimits,
    "id" => Id,
    "isFinished" => IsFinished,
    "isPrivate" => IsPrivate,
    "isStalled" => IsStalled,
    "labels" => Labels,
    "leftUntilDone" => LeftUntilDone,
    "magnetLink" => MagnetLink,
    "manualAnnounceTime" => ManualAnnounceTime,
    "maxConnectedPeers" => MaxConnectedPeers,
    "metadataPercentComplete" => MetadataPercentComplete,
    "name" => Name,
    "peer-limit" => PeerLimit,
    "peers" => Peers,
    "peersConnected" => PeersConnected,
    "peersFrom" => PeersFrom,
    "peersGettingFromUs" => PeersGettingFromUs,
    "peersSendingToUs" => PeersSendingToUs,
    "percentComplete" => PercentComplete,
    "percentDone" => PercentDone,
    "pieces" => Pieces,
    "pieceCount" => PieceCount,
    "pieceSize" => PieceSize,
    "priorities" => Priorities,
    "primary-mime-type" => PrimaryMimeType,
    "queuePosition" => QueuePosition,
    "rateDownload" => RateDownload,
    "rateUpload" => RateUpload,
    "recheckProgress" => RecheckProgress,
    "secondsDownloading" => SecondsDownloading,
    "secondsSeeding" => SecondsSeeding,
    "seedIdleLimit" => SeedIdleLimit,
    "seedIdleMode" => SeedIdleMode,
    "seedRatioLimit" => SeedRatioLimit,
    "seedRatioMode" => SeedRatioMode,
    "sequentialDownload" => SequentialDownload,
    "sizeWhenDone" => SizeWhenDone,
    "startDate" => StartDate,
    "status" => Status,
    "torrentFile" => TorrentFile,
    "totalSize" => TotalSize,
    "trackerList" => TrackerList,
    "trackers" => Trackers,
    "trackerStats" => TrackerStats,
    "uploadedEver" => UploadedEver,
    "uploadLimit" => UploadLimit,
    "uploadLimited" => UploadLimited,
    "uploadRatio" => UploadRatio,
    "wanted" => Wanted,
    "webseeds" => Webseeds,
    "webseedsSendingToUs" => WebseedsSendingToUs,
}

/// What a torrent's fields are written from.
pub struct View<'a> {
    pub id: u32,
    pub e: &'a Entry,
    pub engine: &'a dyn Engine,
    state: &'a StateDir,
    /// Fetched on first use: the peers and trackers are the session's.
    peers: Option<Vec<PeerInfo>>,
    trackers: Option<Vec<TrackerStat>>,
}

/// Speeds in the RPC are in kB/s (1000 bytes).
pub const SPEED_UNIT: u64 = 1000;

fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing into a Vec fails only for maps with non-string keys: none here.
    let _ = serde_json::to_writer(&mut *out, v);
}

impl<'a> View<'a> {
    pub fn new(id: u32, e: &'a Entry, engine: &'a dyn Engine, state: &'a StateDir) -> View<'a> {
        View {
            id,
            e,
            engine,
            state,
            peers: None,
            trackers: None,
        }
    }

    fn peers(&mut self) -> &[PeerInfo] {
        let (engine, s) = (self.engine, self.e.session_id());
        self.peers
            .get_or_insert_with(|| s.map(|s| engine.peers(s)).unwrap_or_default())
    }

    fn tracker_stats(&mut self) -> &[TrackerStat] {
        let (engine, s) = (self.engine, self.e.session_id());
        self.trackers
            .get_or_insert_with(|| s.map(|s| engine.trackers(s)).unwrap_or_default())
    }

    fn tiers(&self) -> Vec<Vec<String>> {
        self.e
            .saved
            .trackers
            .clone()
            .unwrap_or_else(|| self.e.meta.tracker_tiers())
    }

    /// Transmission's error number and text: ours, else the trackers'.
    fn error(&mut self) -> (u8, String) {
        if let Some((kind, why)) = &self.e.error {
            return (*kind as u8, why.clone());
        }
        let stats = self.tracker_stats();
        if !stats.is_empty()
            && stats
                .iter()
                .all(|t| matches!(t.last_announce, Some((_, false))))
            && let Some(why) = stats.iter().find_map(|t| t.last_error.clone())
        {
            return (1, format!("Tracker: {why}"));
        }
        (0, String::new())
    }

    /// Writes one field's value.
    pub fn write(&mut self, out: &mut Vec<u8>, f: Field) {
        let e = self.e;
        let s = &e.saved;
        let info = &*e.info;
        match f {
            Field::ActivityDate => put(out, &s.activity_date),
            Field::AddedDate => put(out, &s.added_date),
            Field::Availability => {
                let v: Vec<i32> = (0..info.piece_count())
                    .map(|p| if e.have.get(p) { -1 } else { 0 })
                    .collect();
                put(out, &v);
            }
            Field::BandwidthPriority => put(out, &s.bandwidth_priority),
            Field::Comment => put(out, e.meta.comment.as_deref().unwrap_or("")),
            Field::CorruptEver => put(out, &s.corrupt_ever),
            Field::Creator => put(out, e.meta.created_by.as_deref().unwrap_or("")),
            Field::DateCreated => put(out, &e.meta.creation_date.unwrap_or(0)),
            Field::DesiredAvailable => {
                let v = if e.peers_connected > 0 {
                    e.progress.left_until_done
                } else {
                    0
                };
                put(out, &v);
            }
            Field::DoneDate => put(out, &s.done_date),
            Field::DownloadDir => put(out, &s.download_dir.to_string_lossy()),
            Field::DownloadedEver => put(out, &s.downloaded_ever),
            Field::DownloadLimit => put(out, &(s.download_limit / SPEED_UNIT)),
            Field::DownloadLimited => put(out, &s.download_limited),
            Field::EditDate | Field::ManualAnnounceTime => put(out, &0),
            Field::Error => {
                let (n, _) = self.error();
                put(out, &n);
            }
            Field::ErrorString => {
                let (_, why) = self.error();
                put(out, &why);
            }
            Field::Eta => put(out, &eta(e)),
            Field::EtaIdle => put(out, &-1),
            Field::FileCount => put(out, &info.files.len()),
            Field::Files => {
                let done = e.file_progress();
                out.push(b'[');
                for (i, file) in info.files.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"bytesCompleted\":");
                    put(out, &done[i]);
                    out.extend_from_slice(b",\"length\":");
                    put(out, &file.length);
                    out.extend_from_slice(b",\"name\":");
                    put(out, &file.display_path());
                    out.push(b'}');
                }
                out.push(b']');
            }
            Field::FileStats => {
                let done = e.file_progress();
                out.push(b'[');
                for (i, p) in s.files.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = write!(
                        out,
                        "{{\"bytesCompleted\":{},\"wanted\":{},\"priority\":{}}}",
                        done.get(i).copied().unwrap_or(0),
                        p.wanted,
                        p.priority
                    );
                }
                out.push(b']');
            }
            Field::Group => put(out, ""),
            Field::HashString => put(out, &e.hash().to_hex()),
            Field::HaveUnchecked => put(out, &0),
            Field::HaveValid => put(out, &e.progress.have_valid),
            Field::HonorsSessionLimits => put(out, &true),
            Field::Id => put(out, &self.id),
            Field::IsFinished => put(out, &s.finished),
            Field::IsPrivate => put(out, &info.private),
            Field::IsStalled => put(out, &is_stalled(e)),
            Field::Labels => put(out, &s.labels),
            Field::LeftUntilDone => put(out, &e.progress.left_until_done),
            Field::MagnetLink => put(out, &magnet_link(e, &self.tiers())),
            Field::MaxConnectedPeers | Field::PeerLimit => put(out, &s.peer_limit),
            Field::MetadataPercentComplete => put(out, &1.0),
            Field::Name => put(out, e.name()),
            Field::Peers => {
                let peers = self.peers();
                out.push(b'[');
                for (i, p) in peers.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_peer(out, p);
                }
                out.push(b']');
            }
            Field::PeersConnected => put(out, &e.peers_connected),
            Field::PeersFrom => {
                let peers = self.peers();
                let incoming = peers.iter().filter(|p| p.incoming).count();
                let _ = write!(
                    out,
                    "{{\"fromCache\":0,\"fromDht\":0,\"fromIncoming\":{incoming},\"fromLpd\":0,\"fromLtep\":0,\"fromPex\":0,\"fromTracker\":{}}}",
                    peers.len() - incoming
                );
            }
            Field::PeersGettingFromUs => {
                let n = self.peers().iter().filter(|p| uploading_to(p)).count();
                put(out, &n);
            }
            Field::PeersSendingToUs => {
                let n = self.peers().iter().filter(|p| downloading_from(p)).count();
                put(out, &n);
            }
            Field::PercentComplete => {
                let total = info.total_length.max(1);
                put(out, &(e.progress.have_valid as f64 / total as f64));
            }
            Field::PercentDone => put(out, &e.progress.percent_done()),
            Field::Pieces => put(out, &data_encoding::BASE64.encode(e.have.as_wire())),
            Field::PieceCount => put(out, &info.piece_count()),
            Field::PieceSize => put(out, &info.piece_length),
            Field::Priorities => {
                let v: Vec<i8> = s.files.iter().map(|f| f.priority).collect();
                put(out, &v);
            }
            Field::PrimaryMimeType => put(out, "application/octet-stream"),
            Field::QueuePosition => put(out, &s.queue_position),
            Field::RateDownload => put(out, &e.rates.down),
            Field::RateUpload => put(out, &e.rates.up),
            Field::RecheckProgress => put(out, &0.0),
            Field::SecondsDownloading => put(out, &s.seconds_downloading),
            Field::SecondsSeeding => put(out, &s.seconds_seeding),
            Field::SeedIdleLimit => put(out, &s.seed_idle_limit),
            Field::SeedIdleMode => put(out, &s.seed_idle_mode),
            Field::SeedRatioLimit => put(out, &s.seed_ratio_limit),
            Field::SeedRatioMode => put(out, &s.seed_ratio_mode),
            Field::SequentialDownload => put(out, &false),
            Field::SizeWhenDone => put(out, &e.progress.size_when_done),
            Field::StartDate => put(out, &e.start_date),
            Field::Status => put(out, &(e.status() as u8)),
            Field::TorrentFile => put(out, &self.state.torrent_file(&e.hash()).to_string_lossy()),
            Field::TotalSize => put(out, &info.total_length),
            Field::TrackerList => {
                let text: Vec<String> = self.tiers().iter().map(|t| t.join("\n")).collect();
                put(out, &text.join("\n\n"));
            }
            Field::Trackers => {
                out.push(b'[');
                for (i, (tier, url)) in flat(&self.tiers()).into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"announce\":");
                    put(out, &url);
                    let _ = write!(out, ",\"id\":{i},\"scrape\":");
                    put(out, &scrape_url(&url));
                    out.extend_from_slice(b",\"sitename\":");
                    put(out, &sitename(&url));
                    let _ = write!(out, ",\"tier\":{tier}}}");
                }
                out.push(b']');
            }
            Field::TrackerStats => {
                let tiers = self.tiers();
                let running = matches!(e.run, Run::Running(_));
                let stats = self.tracker_stats().to_vec();
                out.push(b'[');
                for (i, (tier, url)) in flat(&tiers).into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let st = stats.iter().find(|s| s.url == url);
                    write_tracker_stat(out, i, tier, &url, st, running);
                }
                out.push(b']');
            }
            Field::UploadedEver => put(out, &s.uploaded_ever),
            Field::UploadLimit => put(out, &(s.upload_limit / SPEED_UNIT)),
            Field::UploadLimited => put(out, &s.upload_limited),
            Field::UploadRatio => put(out, &e.upload_ratio()),
            Field::Wanted => {
                let v: Vec<bool> = s.files.iter().map(|f| f.wanted).collect();
                put(out, &v);
            }
            Field::Webseeds => put(out, &e.meta.url_list),
            Field::WebseedsSendingToUs => put(out, &0),
        }
    }
}

/// Seconds until the download completes; -1 when not known.
fn eta(e: &Entry) -> i64 {
    if e.progress.done() || e.rates.down == 0 {
        -1
    } else {
        (e.progress.left_until_done / e.rates.down) as i64
    }
}

/// Running, wanting data, and nothing came for five minutes.
fn is_stalled(e: &Entry) -> bool {
    matches!(e.run, Run::Running(_))
        && e.last_transfer.elapsed() >= std::time::Duration::from_secs(300)
}

fn uploading_to(p: &PeerInfo) -> bool {
    !p.am_choking && p.candidate.interested
}

fn downloading_from(p: &PeerInfo) -> bool {
    !p.peer_choking && p.am_interested
}

fn write_peer(out: &mut Vec<u8>, p: &PeerInfo) {
    let mut flags = String::new();
    if downloading_from(p) {
        flags.push('D');
    } else if p.am_interested {
        flags.push('d');
    }
    if uploading_to(p) {
        flags.push('U');
    } else if p.candidate.interested {
        flags.push('u');
    }
    if !p.peer_choking && !p.am_interested {
        flags.push('K');
    }
    if !p.am_choking && !p.candidate.interested {
        flags.push('?');
    }
    if p.incoming {
        flags.push('I');
    }
    out.extend_from_slice(b"{\"address\":");
    put(out, &p.addr.ip().to_string());
    out.extend_from_slice(b",\"clientName\":");
    put(out, &p.client);
    let _ = write!(
        out,
        ",\"clientIsChoked\":{},\"clientIsInterested\":{},\"flagStr\":",
        p.peer_choking, p.am_interested
    );
    put(out, &flags);
    let _ = write!(
        out,
        ",\"isDownloadingFrom\":{},\"isEncrypted\":false,\"isIncoming\":{},\"isUploadingTo\":{},\"isUTP\":false,\"peerIsChoked\":{},\"peerIsInterested\":{},\"port\":{},\"progress\":",
        downloading_from(p),
        p.incoming,
        uploading_to(p),
        p.am_choking,
        p.candidate.interested,
        p.addr.port()
    );
    put(out, &f64::from(p.progress));
    let _ = write!(
        out,
        ",\"rateToClient\":{},\"rateToPeer\":{}}}",
        p.candidate.download_rate, p.candidate.upload_rate
    );
}

fn write_tracker_stat(
    out: &mut Vec<u8>,
    id: usize,
    tier: usize,
    url: &str,
    st: Option<&TrackerStat>,
    running: bool,
) {
    let count = |v: Option<u32>| v.map_or(-1, i64::from);
    let (last_time, last_ok) = st.and_then(|s| s.last_announce).unwrap_or((0, false));
    let result = match st {
        Some(s) if s.last_announce.is_some() && last_ok => "Success".to_owned(),
        Some(s) => s.last_error.clone().unwrap_or_default(),
        None => String::new(),
    };
    // 0 inactive, 1 waiting for its next announce.
    let state = u8::from(running);
    out.extend_from_slice(b"{\"announce\":");
    put(out, url);
    let _ = write!(
        out,
        ",\"announceState\":{state},\"downloadCount\":{},\"hasAnnounced\":{},\"hasScraped\":{},\"host\":",
        count(st.and_then(|s| s.downloads)),
        last_time > 0,
        st.is_some_and(|s| s.seeders.is_some()),
    );
    put(out, &host(url));
    let _ = write!(
        out,
        ",\"id\":{id},\"isBackup\":false,\"lastAnnouncePeerCount\":{},\"lastAnnounceResult\":",
        st.map_or(0, |s| s.last_peers)
    );
    put(out, &result);
    let _ = write!(
        out,
        ",\"lastAnnounceStartTime\":{last_time},\"lastAnnounceSucceeded\":{last_ok},\"lastAnnounceTime\":{last_time},\"lastAnnounceTimedOut\":false,\"lastScrapeResult\":\"\",\"lastScrapeStartTime\":0,\"lastScrapeSucceeded\":{},\"lastScrapeTime\":0,\"lastScrapeTimedOut\":false,\"leecherCount\":{},\"nextAnnounceTime\":{},\"nextScrapeTime\":0,\"scrape\":",
        st.is_some_and(|s| s.seeders.is_some()),
        count(st.and_then(|s| s.leechers)),
        if running {
            st.map_or(0, |s| s.next_announce)
        } else {
            0
        },
    );
    put(out, &scrape_url(url));
    let _ = write!(
        out,
        ",\"scrapeState\":0,\"seederCount\":{},\"sitename\":",
        count(st.and_then(|s| s.seeders))
    );
    put(out, &sitename(url));
    let _ = write!(out, ",\"tier\":{tier}}}");
}

/// (tier, url) in order: a tracker's id is its place here.
pub fn flat(tiers: &[Vec<String>]) -> Vec<(usize, String)> {
    tiers
        .iter()
        .enumerate()
        .flat_map(|(t, urls)| urls.iter().map(move |u| (t, u.clone())))
        .collect()
}

fn host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or("").to_owned()
}

/// The site's name: the host's second-level label (`tracker.example.org`
/// gives `example`).
fn sitename(url: &str) -> String {
    let host = host(url);
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split(']').next().unwrap_or("").to_owned(),
        None => host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h),
    };
    if name.parse::<std::net::IpAddr>().is_ok() {
        return name.to_owned();
    }
    let labels: Vec<&str> = name.split('.').collect();
    match labels.len() {
        0 | 1 => name.to_owned(),
        n => labels[n - 2].to_owned(),
    }
}

/// BEP 48: the scrape URL of an HTTP tracker whose path ends in
/// `announce`; UDP trackers scrape at the same address.
fn scrape_url(url: &str) -> String {
    if url.starts_with("udp://") {
        return url.to_owned();
    }
    let (path_end, query) = url.find('?').map_or((url.len(), ""), |i| (i, &url[i..]));
    let path = &url[..path_end];
    match path.rfind('/') {
        Some(slash) if path[slash + 1..].starts_with("announce") => format!(
            "{}/scrape{}{query}",
            &path[..slash],
            &path[slash + 1 + "announce".len()..]
        ),
        _ => String::new(),
    }
}

fn magnet_link(e: &Entry, tiers: &[Vec<String>]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let mut s = format!(
        "magnet:?xt=urn:btih:{}&dn={}",
        e.hash().to_hex(),
        utf8_percent_encode(e.name(), NON_ALPHANUMERIC)
    );
    for (_, url) in flat(tiers) {
        s.push_str("&tr=");
        s.extend(utf8_percent_encode(&url, NON_ALPHANUMERIC));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_name_parses_back() {
        for name in [
            "id",
            "trackerStats",
            "peer-limit",
            "file-count",
            "webseedsSendingToUs",
        ] {
            assert_eq!(Field::parse(name).map(Field::name), Some(name));
        }
        assert_eq!(Field::parse("nosuchfield"), None);
    }

    #[test]
    fn tracker_urls() {
        assert_eq!(
            scrape_url("http://t.example.org:80/announce?k=1"),
            "http://t.example.org:80/scrape?k=1"
        );
        assert_eq!(scrape_url("http://t.example.org/a"), "");
        assert_eq!(
            scrape_url("udp://t.example.org:1337"),
            "udp://t.example.org:1337"
        );
        assert_eq!(
            sitename("http://tracker.example.org:6969/announce"),
            "example"
        );
        assert_eq!(sitename("http://127.0.0.1:6969/announce"), "127.0.0.1");
        assert_eq!(sitename("udp://[::1]:6969"), "::1");
        assert_eq!(host("udp://[::1]:80/x"), "[::1]:80");
    }
}
