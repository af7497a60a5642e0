//! The WASI functions that would block, linked so that none of them waits.
//!
//! wasmtime-wasi's synchronous bindings run every blocking WASI call (a blocking write,
//! a stream's drop, `poll`, creating a UDP socket, binding a TCP one) as a future, with
//! `block_on` on the calling thread. That let a plugin hold its host thread as long as
//! it liked: an hour's `sleep` is a wait on a pollable, and a call's deadline stops
//! only the plugin's own code, not a host call it is in. It also made a slate called on
//! an async runtime's worker panic, as tokio refuses `block_on` there. Here they
//! complete at once instead, which the sandbox's capabilities make exact:
//! - its streams never wait: stdin is closed, stdout a sink, stderr a bounded memory
//!   pipe (a write past its capacity fails, as before);
//! - its clocks are fixed, so a pollable on one is as ready as it will ever be, and
//!   `poll` and `block` find every pollable ready;
//! - it grants no network, so sockets are refused when they are created, before
//!   anything could wait on one (name lookups are refused by wasmtime-wasi itself).
//!
//! Linked over [`wasmtime_wasi::p2::add_to_linker_sync`]'s functions of the same names.

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::bindings::sync::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, DynPollable, SocketError, SocketResult, StreamError,
    StreamResult, TcpSocket, UdpSocket,
};

use super::store::CallState;

/// Bytes a blocking write may carry at once (the WASI contract).
const BLOCKING_WRITE_MAX: usize = 4096;

/// Links the functions of this module's interfaces over the ones already in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    streams::add_to_linker::<CallState, Io>(linker, table)?;
    poll::add_to_linker::<CallState, Io>(linker, table)?;
    tcp_create_socket::add_to_linker::<CallState, NoSockets>(linker, |_| NoSockets)?;
    udp_create_socket::add_to_linker::<CallState, NoSockets>(linker, |_| NoSockets)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The call's resource table, seen through this module's functions.
struct Table<'a>(&'a mut ResourceTable);

fn table(state: &mut CallState) -> Table<'_> {
    Table(WasiView::ctx(state).table)
}

struct Io;

impl HasData for Io {
    type Data<'a> = Table<'a>;
}

/// Every socket refused.
struct NoSockets;

impl HasData for NoSockets {
    type Data<'a> = NoSockets;
}

impl network::Host for NoSockets {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        error.downcast()
    }

    // Not linked from here: wasmtime-wasi's own, which reads the call's table, serves it.
    fn network_error_code(
        &mut self,
        _: Resource<network::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        Ok(None)
    }
}

impl network::HostNetwork for NoSockets {
    // As above.
    fn drop(&mut self, _: Resource<network::Network>) -> wasmtime::Result<()> {
        Ok(())
    }
}

fn refused<T>() -> SocketResult<T> {
    Err(ErrorCode::AccessDenied.into())
}

impl tcp_create_socket::Host for NoSockets {
    fn create_tcp_socket(&mut self, _: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        refused()
    }
}

impl udp_create_socket::Host for NoSockets {
    fn create_udp_socket(&mut self, _: IpAddressFamily) -> SocketResult<Resource<UdpSocket>> {
        refused()
    }
}

/// A blocking write of `len` bytes is refused past [`BLOCKING_WRITE_MAX`], as WASI says.
fn too_long(len: usize) -> StreamResult<()> {
    if len > BLOCKING_WRITE_MAX {
        return Err(StreamError::Trap(wasmtime::format_err!(
            "a blocking write of {len} bytes; at most {BLOCKING_WRITE_MAX} at once"
        )));
    }
    Ok(())
}

/// A stream that is not ready when a blocking call needs it: none of the sandbox's is,
/// so it means a stream this module was not written for.
fn not_ready() -> StreamError {
    StreamError::Trap(wasmtime::format_err!(
        "a blocking stream call found its stream not ready; the sandbox cannot wait"
    ))
}

impl streams::Host for Table<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.0, err)
    }
}

impl Table<'_> {
    /// Writes all of `bytes` to `stream` now, then flushes it.
    fn write_now(
        &mut self,
        stream: &Resource<DynOutputStream>,
        mut bytes: Bytes,
    ) -> StreamResult<()> {
        too_long(bytes.len())?;
        let s = self.0.get_mut(stream)?;
        while !bytes.is_empty() {
            let room = s.check_write()?;
            if room == 0 {
                return Err(not_ready());
            }
            s.write(bytes.split_to(room.min(bytes.len())))?;
        }
        s.flush()
    }
}

impl streams::HostOutputStream for Table<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        self.0.delete(stream)?;
        Ok(())
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.0, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        self.write_now(&stream, bytes.into())
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        too_long(len)?;
        self.write_now(&stream, Bytes::from(vec![0; len]))
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.0, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        self.0.get_mut(&stream)?.flush()
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.0, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.0, stream, len)
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }
}

impl streams::HostInputStream for Table<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        self.0.delete(stream)?;
        Ok(())
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.0, stream)
    }
}

impl poll::Host for Table<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        if pollables.is_empty() {
            wasmtime::bail!("poll of an empty list");
        }
        for p in &pollables {
            self.0.get(p)?;
        }
        Ok((0..pollables.len() as u32).collect())
    }
}

impl poll::HostPollable for Table<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        self.0.get(&pollable)?;
        Ok(true)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.0.get(&pollable)?;
        Ok(())
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.0, pollable)
    }
}
