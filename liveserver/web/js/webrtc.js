// WHEP (watch the room's program) and WHIP (publish a camera) from the browser, on the
// server's public API only (docs/protocol.md, section 8c). The server answers once it has
// gathered every candidate, so the browser gathers its own first and sends one offer.

async function gathered(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const done = () => pc.iceGatheringState === "complete" && resolve();
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs); // send what we have: the server's own candidates are in its answer
  });
}

async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  if (res.status !== 201) {
    const retry = Number(res.headers.get("Retry-After") || 0);
    const body = await res.json().catch(() => ({}));
    const err = new Error(body.error?.message || res.statusText);
    err.status = res.status;
    err.retryAfterS = retry;
    throw err;
  }
  await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
  return new URL(res.headers.get("Location"), location.href).href;
}

/** A WHIP or WHEP session: the offer of `pc` posted to `url`; stop() closes it and DELETEs it. */
async function session(pc, url, token) {
  let location;
  try {
    location = await exchange(pc, url, token);
  } catch (e) {
    pc.close();
    throw e;
  }
  return {
    pc,
    stop() {
      pc.close();
      fetch(location, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
    },
  };
}

/** Watch the program of `room` in `video` (picture and sound).  Returns {pc, stop}. */
export async function watch(room, token, video) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.ontrack = (e) => {
    stream.addTrack(e.track);
    if (video.srcObject !== stream) video.srcObject = stream;
    video.play().catch(() => {});
  };
  return session(pc, `/api/v1/rooms/${encodeURIComponent(room)}/whep`, token);
}

/** Publish `stream`'s video as camera `camera` of `room` (a host token).  Returns {pc, stop}. */
export async function publish(room, camera, token, stream) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of stream.getVideoTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  return session(pc, `/api/v1/rooms/${encodeURIComponent(room)}/cameras/${encodeURIComponent(camera)}/whip`, token);
}
