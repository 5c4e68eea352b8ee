import XCTest
@testable import Launcher
import PMI

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
}
