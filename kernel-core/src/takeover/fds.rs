//! Listening sockets passed between processes as open descriptors (`SCM_RIGHTS`): the new
//! process accepts on the very sockets the old one listens on, so no connection is refused.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

use super::TakeoverError;

/// The most descriptors one handover passes (the kernel's own limit per message is 253).
pub const MAX_LISTENERS: usize = 253;

/// Sends `fds` with one byte of data (ancillary data needs some), all in one message.
pub(crate) fn send_fds(stream: &UnixStream, fds: &[BorrowedFd<'_>]) -> Result<(), TakeoverError> {
    if fds.len() > MAX_LISTENERS {
        return Err(TakeoverError::TooManyListeners { count: fds.len() });
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(TakeoverError::Protocol(
            "no room for the descriptors in the message".into(),
        ));
    }
    let sent = rustix::net::sendmsg(stream.as_fd(), &[IoSlice::new(&[1])], &mut control, SendFlags::NOSIGNAL).map_err(
        |e| TakeoverError::Io {
            op: "send the listening sockets",
            source: e.into(),
        },
    )?;
    if sent != 1 {
        return Err(TakeoverError::PeerGone);
    }
    Ok(())
}

/// Receives the `count` descriptors [`send_fds`] sent, close-on-exec.
pub(crate) fn recv_fds(stream: &UnixStream, count: usize) -> Result<Vec<OwnedFd>, TakeoverError> {
    if count > MAX_LISTENERS {
        return Err(TakeoverError::TooManyListeners { count });
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(count.max(1)))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let received = rustix::net::recvmsg(
        stream.as_fd(),
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| match std::io::Error::from(e) {
        error
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            TakeoverError::TimedOut
        }
        source => TakeoverError::Io {
            op: "receive the listening sockets",
            source,
        },
    })?;
    if received.bytes != 1 {
        return Err(TakeoverError::PeerGone);
    }
    let mut fds = Vec::with_capacity(count);
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if fds.len() != count {
        return Err(TakeoverError::Protocol(format!(
            "{count} listening socket(s) announced, {} received",
            fds.len()
        )));
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_listener_crosses_and_accepts() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        send_fds(&a, &[listener.as_fd()]).unwrap();
        let mut fds = recv_fds(&b, 1).unwrap();
        let received = TcpListener::from(fds.remove(0));
        drop(listener);
        let mut client = TcpStream::connect(addr).unwrap();
        let (mut served, _) = received.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut byte = [0];
        served.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
    }

    #[test]
    fn none_is_fine() {
        let (a, b) = UnixStream::pair().unwrap();
        send_fds(&a, &[]).unwrap();
        assert!(recv_fds(&b, 0).unwrap().is_empty());
    }
}
