import XCTest
@testable import Launcher
import MyriXen
import PMI
#if canImport(Glibc)
import Glibc
#endif

/// The PMI-1 server against the exchange MPICH 4.0's simple PMI client really has (recorded
/// with `swiftrun -v -n 2` running a program built with mpicc.mpich), and its wire format.
final class PMIServerTests: XCTestCase {
    func message(_ line: String) throws -> PMIMessage { try PMIMessage.parse(Substring(line)) }

    func testARecordedMPICHStartup() throws {
        var server = PMIServer(size: 2, kvsname: "kvs_1_0", appnum: [0, 0], processMapping: "(vector,(0,1,2))")
        let script: [(rank: Int, send: String, expect: [String])] = [
            (1, "cmd=init pmi_version=1 pmi_subversion=1", ["cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1"]),
            (1, "cmd=get_maxes", ["cmd=maxes rc=0 kvsname_max=256 keylen_max=64 vallen_max=1024"]),
            (1, "cmd=get_appnum", ["cmd=appnum rc=0 appnum=0"]),
            (1, "cmd=get_my_kvsname", ["cmd=my_kvsname rc=0 kvsname=kvs_1_0"]),
            (1, "cmd=get kvsname=kvs_1_0 key=PMI_process_mapping", ["cmd=get_result rc=0 value=(vector,(0,1,2))"]),
            (1, "cmd=put kvsname=kvs_1_0 key=-allgather-shm-1-1 value=20FA08A77B43", ["cmd=put_result rc=0"]),
            (1, "cmd=barrier_in", []),
        ]
        for step in script {
            let out = server.handle(try message(step.send), from: step.rank)
            XCTAssertEqual(out.replies.map(\.description), step.expect, step.send)
            XCTAssertTrue(out.broadcast.isEmpty)
        }
        XCTAssertEqual(server.barrierWaiters, 1)
        let released = server.handle(try message("cmd=barrier_in"), from: 0)
        XCTAssertEqual(released.broadcast.map(\.description), ["cmd=barrier_out rc=0"])
        XCTAssertEqual(released.events, [.barrierReleased])
        XCTAssertEqual(server.handle(try message("cmd=get kvsname=kvs_1_0 key=-allgather-shm-1-1"), from: 0).replies.map(\.description),
                       ["cmd=get_result rc=0 value=20FA08A77B43"])
        XCTAssertEqual(server.handle(try message("cmd=get kvsname=kvs_1_0 key=missing"), from: 0).replies.first?.rc, -1)
        XCTAssertEqual(server.handle(try message("cmd=finalize"), from: 1).events, [.finalized(rank: 1)])
    }

    func testAbortKeepsItsWholeMessage() throws {
        var server = PMIServer(size: 1, kvsname: "k", appnum: [0], processMapping: "(vector)")
        let m = try message("cmd=abort exitcode=7 message=rank 0 gives up: x=1 y=2")
        XCTAssertEqual(m["message"], "rank 0 gives up: x=1 y=2")
        XCTAssertEqual(server.handle(m, from: 0).events, [.abort(rank: 0, code: 7, message: "rank 0 gives up: x=1 y=2")])
    }

    func testARankThatLeavesStrandsTheBarrier() throws {
        var server = PMIServer(size: 3, kvsname: "k", appnum: [0, 0, 0], processMapping: "")
        _ = server.handle(try message("cmd=barrier_in"), from: 0)
        XCTAssertTrue(server.rankExited(2), "rank 0 waits for rank 2, which left")
        XCTAssertTrue(server.barrierIsStranded)
        var clean = PMIServer(size: 2, kvsname: "k", appnum: [0, 0], processMapping: "")
        _ = clean.handle(try message("cmd=finalize"), from: 1)
        XCTAssertFalse(clean.rankExited(1), "a finalized rank leaving strands nobody")
    }

    func testUnknownCommandsAndBadLines() throws {
        var server = PMIServer(size: 1, kvsname: "k", appnum: [0], processMapping: "")
        XCTAssertEqual(server.handle(try message("cmd=spawn nprocs=2"), from: 0).replies.first?.rc, -1)
        XCTAssertEqual(server.handle(try message("cmd=put key=k"), from: 0).replies.first?.rc, -1, "put without a value")
        XCTAssertEqual(server.handle(try message("cmd=put kvsname=other key=k value=v"), from: 0).replies.first?.rc, -1)
        XCTAssertThrowsError(try message("hello there"))
        XCTAssertThrowsError(try message("cmd=put novalue"))
        XCTAssertEqual(PMIMessage("set", [("rank", "3")]).line, "cmd=set rank=3\n")
    }

    func testNoRankOverwritesWhatTheProcessManagerServes() throws {
        // Issue 8.9: a put of PMI_process_mapping replaced the layout every rank reads.
        var server = PMIServer(size: 2, kvsname: "k", appnum: [0, 0], processMapping: "(vector,(0,1,2))")
        var proxy = PMIProxy(size: 2, kvsname: "k", appnum: [0, 0], ranks: [1], processMapping: "(vector,(0,1,2))")
        for key in ["PMI_process_mapping", "PMI_hwloc_xmlfile"] {
            let put = try message("cmd=put kvsname=k key=\(key) value=(vector,(0,2,1))")
            XCTAssertEqual(server.handle(put, from: 0).replies.map(\.description),
                           ["cmd=put_result rc=-1 msg=key_\(key)_is_reserved_for_the_process_manager"])
            XCTAssertEqual(proxy.handle(put, from: 1),
                           [.reply(try message("cmd=put_result rc=-1 msg=key_\(key)_is_reserved_for_the_process_manager"))], "an agent refuses it too")
        }
        let get = try message("cmd=get kvsname=k key=PMI_process_mapping")
        XCTAssertEqual(server.handle(get, from: 1).replies.map(\.description), ["cmd=get_result rc=0 value=(vector,(0,1,2))"])
        XCTAssertEqual(proxy.handle(get, from: 1), [.reply(try message("cmd=get_result rc=0 value=(vector,(0,1,2))"))])
        XCTAssertEqual(proxy.handle(try message("cmd=barrier_in"), from: 1), [.barrier(ranks: [1], puts: [])], "nothing refused travels on")
        // Nor through a host's combined barrier (an agent's proxy refuses them; swiftrun too).
        _ = server.hostEntered(ranks: [1], puts: [("PMI_process_mapping", "(vector,(0,2,1))"), ("card-1", "B")])
        XCTAssertEqual(server.kvs["PMI_process_mapping"], "(vector,(0,1,2))")
        XCTAssertEqual(server.takeDelta().map(\.key), ["card-1"])
        XCTAssertEqual(server.handle(try message("cmd=put kvsname=k key=PMIx value=ok"), from: 0).replies.first?.rc, 0, "only PMI_ keys are reserved")
    }

    func testAnAgentsProxyAnswersLocallyAndCombinesTheBarrier() throws {
        var proxy = PMIProxy(size: 4, kvsname: "kvs_9_0", appnum: [0, 0, 1, 1], ranks: [2, 3], processMapping: "(vector,(0,2,2))")
        XCTAssertEqual(proxy.handle(try message("cmd=init pmi_version=1 pmi_subversion=1"), from: 2),
                       [.reply(try message("cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1"))])
        XCTAssertEqual(proxy.handle(try message("cmd=get_appnum"), from: 3), [.reply(try message("cmd=appnum rc=0 appnum=1"))])
        XCTAssertEqual(proxy.handle(try message("cmd=get kvsname=kvs_9_0 key=PMI_process_mapping"), from: 2),
                       [.reply(try message("cmd=get_result rc=0 value=(vector,(0,2,2))"))], "answered from the cache")
        XCTAssertEqual(proxy.handle(try message("cmd=put kvsname=kvs_9_0 key=card-2 value=A"), from: 2), [.reply(try message("cmd=put_result rc=0"))])
        XCTAssertEqual(proxy.handle(try message("cmd=get kvsname=kvs_9_0 key=card-0"), from: 2), [.relay], "not known here: swiftrun answers")
        XCTAssertEqual(proxy.handle(try message("cmd=barrier_in"), from: 2), [], "rank 3 is not in yet")
        XCTAssertEqual(proxy.handle(try message("cmd=barrier_in"), from: 3),
                       [.barrier(ranks: [2, 3], puts: [PMIMessage("kv", [("card-2", "A")])])], "one message for the host, with its puts")
        XCTAssertEqual(proxy.release([("card-0", "Z")]), [2, 3])
        XCTAssertEqual(proxy.handle(try message("cmd=get kvsname=kvs_9_0 key=card-0"), from: 3), [.reply(try message("cmd=get_result rc=0 value=Z"))])
        XCTAssertEqual(proxy.handle(try message("cmd=finalize"), from: 3), [.relay])
        // A rank that leaves does not hold the host's next barrier.
        XCTAssertEqual(proxy.handle(try message("cmd=barrier_in"), from: 2), [])
        XCTAssertEqual(proxy.rankExited(3), [.barrier(ranks: [2], puts: [])])
    }

    func testSwiftrunCountsAHostsCombinedBarrier() throws {
        var server = PMIServer(size: 3, kvsname: "k", appnum: [0, 0, 0], processMapping: "")
        XCTAssertTrue(server.hostEntered(ranks: [1, 2], puts: [("card-1", "B"), ("card-2", "C")]).events.isEmpty)
        let out = server.handle(try message("cmd=barrier_in"), from: 0)
        XCTAssertEqual(out.events, [.barrierReleased])
        XCTAssertEqual(server.kvs["card-2"], "C")
        XCTAssertEqual(server.takeDelta().map(\.key), ["card-1", "card-2"])
        XCTAssertTrue(server.takeDelta().isEmpty, "a new round")
    }

    // MARK: limits

    /// A connected pair: a reader with `lineLimit`, and a writer.
    func channelPair(lineLimit: Int) -> (reader: PMILineChannel, writer: PMILineChannel) {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        let r = PMILineChannel(fd: fds[0], lineLimit: lineLimit), w = PMILineChannel(fd: fds[1])
        addTeardownBlock { r.close(); w.close() }
        return (r, w)
    }

    func testLinesAreReadInLinearTime() throws {
        // A 16 MiB line, then 100,000 short ones: it took 17 s when every read rescanned the
        // whole buffer for a newline and every line shifted the rest.
        let c = channelPair(lineLimit: PMILineChannel.defaultLineLimit)
        var bytes = Array("cmd=put value=".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 16 << 20) + [10]
        for i in 0..<100_000 { bytes += Array("cmd=get key=k\(i)\n".utf8) }
        let start = monotonicNanoseconds()
        var sent = 0
        var lines: [Substring] = []
        while true {
            if sent < bytes.count { sent += max(0, c.writer.sendSome(bytes[sent...])) } else { c.writer.close() }
            guard try c.reader.fill() else { break }
            while let l = try c.reader.nextBufferedLine() { lines.append(l) }
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        XCTAssertEqual(lines.count, 100_001)
        XCTAssertEqual(lines.first?.utf8.count, "cmd=put value=".utf8.count + (16 << 20))
        XCTAssertEqual(lines.last, "cmd=get key=k99999")
        XCTAssertEqual(lines[54_321], "cmd=get key=k54320", "in order")
        XCTAssertLessThan(seconds, 5, "linear: well under the 17 s it took")
        XCTAssertEqual(try PMIMessage.parse(lines[0])["value"]?.utf8.count, 16 << 20)
    }

    func testRepliesAreQueuedNeverBlocking() throws {
        // 12 MiB of replies to a peer that reads nothing yet: enqueue returns at once, what the
        // socket does not take waits, and all of it arrives in order once the peer reads.
        let c = channelPair(lineLimit: PMIServer.lineMax)
        let (reader, writer) = (c.writer, c.reader) // the server's end is the non-blocking one
        let pad = String(repeating: "z", count: 180)
        for i in 0..<60_000 { XCTAssertTrue(writer.enqueue(PMIMessage("get_result", [("rc", "0"), ("value", "v\(i)-" + pad)]))) }
        XCTAssertGreaterThan(writer.queuedBytes, 10 << 20, "what the socket did not take waits")
        var got = 0
        while got < 60_000 {
            XCTAssertTrue(writer.flush())
            XCTAssertTrue(try reader.fill())
            while let l = try reader.nextBufferedLine() {
                if got % 19_999 == 0 { XCTAssertTrue(l.hasPrefix("cmd=get_result rc=0 value=v\(got)-"), String(l.prefix(40))) }
                got += 1
            }
        }
        XCTAssertEqual(writer.queuedBytes, 0)
        reader.close()
        XCTAssertFalse(writer.enqueue(PMIMessage("get_result", [("rc", "0")])), "a broken connection says so")
        XCTAssertEqual(writer.queuedBytes, 0, "and keeps nothing")
    }

    func testALineOverTheLimitIsAnErrorThatNamesIt() throws {
        // Without its newline yet: an error as soon as more than the limit came.
        let open = channelPair(lineLimit: PMIServer.lineMax)
        XCTAssertEqual(open.writer.sendSome(ArraySlice(repeating: UInt8(ascii: "x"), count: PMIServer.lineMax)), PMIServer.lineMax)
        XCTAssertTrue(try open.reader.fill())
        XCTAssertNil(try open.reader.nextBufferedLine(), "at the limit, still waiting for the newline")
        XCTAssertEqual(open.writer.sendSome([UInt8(ascii: "x")]), 1)
        XCTAssertTrue(try open.reader.fill())
        XCTAssertThrowsError(try open.reader.nextBufferedLine()) {
            XCTAssertTrue("\($0)".contains("longer than \(PMIServer.lineMax) bytes (the limit)"), "\($0)")
        }
        // Whole, in one read: the same.
        let whole = channelPair(lineLimit: 100)
        whole.writer.enqueue(PMIMessage("get", [("key", String(repeating: "k", count: 200))]))
        XCTAssertTrue(try whole.reader.fill())
        XCTAssertThrowsError(try whole.reader.nextBufferedLine()) {
            XCTAssertTrue("\($0)".contains("a line of 212 bytes, longer than 100 (the limit)"), "\($0)")
        }
        // At the limit: fine.
        let exact = channelPair(lineLimit: 100)
        exact.writer.enqueue(PMIMessage("get", [("key", String(repeating: "k", count: 88))]))
        XCTAssertTrue(try exact.reader.fill())
        XCTAssertEqual(try exact.reader.nextBufferedLine()?.utf8.count, 100)
    }

    func testTheJobsKeyValueSpaceIsBounded() throws {
        var server = PMIServer(size: 2, kvsname: "k", appnum: [0, 0], processMapping: "")
        let value = String(repeating: "v", count: PMIServer.valueMax)
        let cost = "key-00000".utf8.count + value.utf8.count + PMIServer.putOverhead
        let fit = PMIServer.putBytesMax / cost
        for i in 0..<fit {
            let out = server.handle(PMIMessage("put", [("key", "key-\(String(100_000 + i).dropFirst())"), ("value", value)]), from: 0)
            guard out.replies.first?.rc == 0, out.events.isEmpty else { return XCTFail("put \(i) of \(fit) refused: \(out)") }
        }
        let over = server.handle(PMIMessage("put", [("key", "key-over0"), ("value", value)]), from: 1)
        XCTAssertEqual(over.replies.first?.rc, -1)
        XCTAssertTrue(over.replies.first?["msg"]?.contains("\(PMIServer.putBytesMax)") == true, "\(over)")
        XCTAssertEqual(over.events, [.kvsFull(rank: 1)])
        XCTAssertNil(server.kvs["key-over0"])
        // A host's combined puts count too.
        var withAgents = PMIServer(size: 3, kvsname: "k", appnum: [0, 0, 0], processMapping: "")
        let half = (0..<(fit / 2 + 1)).map { (key: "key-\(String(100_000 + $0).dropFirst())", value: value) }
        XCTAssertEqual(withAgents.hostEntered(ranks: [0], puts: half).events, [])
        XCTAssertEqual(withAgents.hostEntered(ranks: [2, 1], puts: half.map { (key: "b" + $0.key, value: $0.value) }).events, [.kvsFull(rank: 1)])
        // An agent's proxy holds its host's puts to the same bound, and says so.
        var proxy = PMIProxy(size: 2, kvsname: "k", appnum: [0, 0], ranks: [0, 1], processMapping: "")
        for i in 0..<fit { _ = proxy.handle(PMIMessage("put", [("key", "key-\(String(100_000 + i).dropFirst())"), ("value", value)]), from: 0) }
        let refused = proxy.handle(PMIMessage("put", [("key", "key-over0"), ("value", value)]), from: 1)
        XCTAssertEqual(refused.count, 2)
        XCTAssertEqual(refused.last, .kvsFull)
    }

    func testOverwritingAKeyCostsOnlyWhatItGrows() throws {
        // A rank that keeps putting one key (a progress counter, a retried address) was cut off
        // once its puts added up to the whole space, however little the space held.
        var server = PMIServer(size: 2, kvsname: "k", appnum: [0, 0], processMapping: "(vector,(0,1,2))")
        func put(_ key: String, _ value: String, from rank: Int = 0) -> PMIServer.Outcome {
            server.handle(PMIMessage("put", [("key", key), ("value", value)]), from: rank)
        }
        let big = String(repeating: "v", count: PMIServer.valueMax)
        let times = 2 * PMIServer.putBytesMax / (6 + big.utf8.count + PMIServer.putOverhead) // the space twice over
        for i in 0..<times {
            // Long and short by turns: growing is charged, shrinking gives back.
            let out = put("card-0", i % 2 == 0 ? big : "short-\(i)")
            guard out.replies.first?.rc == 0, out.events.isEmpty else { return XCTFail("put \(i) of \(times) refused: \(out)") }
        }
        let last = "short-\(times - 1)"
        XCTAssertEqual(server.kvs["card-0"], last)
        XCTAssertEqual(server.putBytes, (19 + 16 + PMIServer.putOverhead) + (6 + last.utf8.count + PMIServer.putOverhead),
                       "what the space holds: the process mapping and one entry")
        XCTAssertEqual(server.takeDelta().map { "\($0.key)=\($0.value)" }, ["card-0=\(last)"], "one entry per key, its latest value")

        // A genuinely full space is still refused. Fill it to the byte with keys of ten
        // characters (each costs 26 bytes and its value), leaving never less than one costs.
        let start = String(repeating: "s", count: 100)
        XCTAssertEqual(put("card-0", start).replies.first?.rc, 0)
        var n = 0
        while server.putBytes < PMIServer.putBytesMax {
            let left = PMIServer.putBytesMax - server.putBytes
            let length = left - 26 <= PMIServer.valueMax ? left - 26 : min(PMIServer.valueMax, left - 52)
            let out = put("fill-" + String(100_000 + n).dropFirst(), String(repeating: "f", count: length))
            guard out.replies.first?.rc == 0 else { return XCTFail("filling: put \(n) refused: \(out)") }
            n += 1
        }
        XCTAssertEqual(put("card-0", String(repeating: "t", count: 100)).replies.first?.rc, 0, "same size: nothing grows")
        let grown = put("card-0", String(repeating: "t", count: 101), from: 1)
        XCTAssertEqual(grown.replies.first?.rc, -1, "one byte more than the space holds")
        XCTAssertEqual(grown.events, [.kvsFull(rank: 1)])
        XCTAssertEqual(server.kvs["card-0"], String(repeating: "t", count: 100), "the refused put changes nothing")
        XCTAssertEqual(put("new", "").events, [.kvsFull(rank: 0)])
        // Shrinking makes room, exactly what it gave back.
        XCTAssertEqual(put("card-0", String(repeating: "t", count: 81)).replies.first?.rc, 0)
        XCTAssertEqual(put("new", "").replies.first?.rc, 0, "19 bytes freed, a 19-byte entry")
        XCTAssertEqual(server.putBytes, PMIServer.putBytesMax)
        XCTAssertEqual(put("x", "").events, [.kvsFull(rank: 0)])

        // A host's combined barrier and an agent's proxy: overwrites, again and again.
        var withAgents = PMIServer(size: 2, kvsname: "k", appnum: [0, 0], processMapping: "")
        var proxy = PMIProxy(size: 2, kvsname: "k", appnum: [0, 0], ranks: [0, 1], processMapping: "")
        let half = times / 2 & ~1 // an even count: the last put is a short one
        for round in 0..<3 {
            for i in 0..<half {
                let out = proxy.handle(PMIMessage("put", [("key", "card-1"), ("value", i % 2 == 0 ? big : "r\(round).\(i)")]), from: 1)
                guard out == [.reply(PMIMessage("put_result", [("rc", "0")]))] else { return XCTFail("proxy put \(i) refused: \(out)") }
            }
            _ = proxy.handle(PMIMessage("barrier_in", []), from: 0)
            let value = "r\(round).\(half - 1)"
            XCTAssertEqual(proxy.handle(PMIMessage("barrier_in", []), from: 1), [.barrier(ranks: [0, 1], puts: [PMIMessage("kv", [("card-1", value)])])],
                           "the host's barrier carries the key once, with its latest value")
            let puts = (0..<half).map { (key: "card-1", value: $0 % 2 == 0 ? big : "r\(round).\($0)") }
            XCTAssertEqual(withAgents.hostEntered(ranks: [0, 1], puts: puts).events, [.barrierReleased])
            let delta = withAgents.takeDelta()
            XCTAssertEqual(delta.map { "\($0.key)=\($0.value)" }, ["card-1=\(value)"])
            XCTAssertEqual(proxy.release(delta), [0, 1])
        }
        XCTAssertEqual(withAgents.putBytes, (19 + PMIServer.putOverhead) + (6 + "r2.\(half - 1)".utf8.count + PMIServer.putOverhead))
    }
}
