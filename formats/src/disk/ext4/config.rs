//! The pinned `mke2fs.conf` (mke2fs.conf(5)) used instead of the host's, so
//! the feature set cannot drift between build machines.
//!
//! Features are Debian's ext4 defaults: `orphan_file` (default since
//! e2fsprogs 1.47.0) is left out so that kernels before 5.15 and older
//! e2fsck can still handle the image, and `metadata_csum_seed` is not
//! needed because the UUID is fixed at creation.

use std::io::Write;

use tempfile::NamedTempFile;

/// Writes the configuration to a temporary file (removed on drop).
pub(crate) fn write_config(block_size: u32) -> std::io::Result<NamedTempFile> {
    let mut f = tempfile::Builder::new()
        .prefix("imgbuild-mke2fs-")
        .suffix(".conf")
        .tempfile()?;
    write!(
        f,
        "[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = {block_size}
\tinode_size = 256
\tinode_ratio = 16384
\thash_alg = half_md4

[fs_types]
\text4 = {{
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}}
\tdefault = {{
\t}}
"
    )?;
    f.flush()?;
    Ok(f)
}
