import Foundation
import XCTest
@testable import EdgeRuntime

final class TrainingIdlePolicyTests: XCTestCase {
    func snapshot(idle: Double = 1000, minute: Int = 120, ac: Bool? = true, load: Double = 0.1, psi: Double? = 1) -> SystemSnapshot {
        SystemSnapshot(secondsSinceLastRequest: idle, localMinuteOfDay: minute, onACPower: ac, loadAverage1: load, cpuPressureAvg10: psi, cores: 2)
    }

    func testDecisions() throws {
        var p = IdlePolicy()
        p.idleAfter = 300
        XCTAssertEqual(p.decide(snapshot()), .run)
        guard case .wait(let why) = p.decide(snapshot(idle: 10)) else { return XCTFail() }
        XCTAssertTrue(why.contains("idle_after"))
        try p.setWindow("23:00-06:00")  // wraps midnight
        XCTAssertEqual(p.decide(snapshot(minute: 2 * 60)), .run)
        XCTAssertEqual(p.decide(snapshot(minute: 23 * 60 + 30)), .run)
        XCTAssertNotEqual(p.decide(snapshot(minute: 12 * 60)), .run)
        XCTAssertThrowsError(try p.setWindow("25:00-01:00"))
        p.requireACPower = true
        XCTAssertNotEqual(p.decide(snapshot(ac: false)), .run)
        XCTAssertEqual(p.decide(snapshot(ac: nil)), .run, "no power information (a VM) counts as mains")
        XCTAssertNotEqual(p.decide(snapshot(load: 5)), .run)
        XCTAssertNotEqual(p.decide(snapshot(psi: 80)), .run)
    }

    func testReadsPowerSupplyAndPressureFromSysfs() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("edge-idle-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/sys/class/power_supply/AC", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/sys/class/power_supply/BAT0", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/proc/pressure", withIntermediateDirectories: true)
        try "Mains\n".write(toFile: root + "/sys/class/power_supply/AC/type", atomically: true, encoding: .utf8)
        try "0\n".write(toFile: root + "/sys/class/power_supply/AC/online", atomically: true, encoding: .utf8)
        try "Battery\n".write(toFile: root + "/sys/class/power_supply/BAT0/type", atomically: true, encoding: .utf8)
        try "some avg10=12.50 avg60=3.00 avg300=1.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
            .write(toFile: root + "/proc/pressure/cpu", atomically: true, encoding: .utf8)
        try "0.42 0.30 0.20 1/100 4242\n".write(toFile: root + "/proc/loadavg", atomically: true, encoding: .utf8)
        var s = SystemSnapshot.current(secondsSinceLastRequest: 5, root: root)
        XCTAssertEqual(s.onACPower, false)
        XCTAssertEqual(s.cpuPressureAvg10, 12.5)
        XCTAssertEqual(s.loadAverage1, 0.42)
        try "1\n".write(toFile: root + "/sys/class/power_supply/AC/online", atomically: true, encoding: .utf8)
        s = SystemSnapshot.current(secondsSinceLastRequest: 5, root: root)
        XCTAssertEqual(s.onACPower, true)
    }

    func testEvalGate() {
        let gate = EvalGate(relativeMargin: 0.05)
        XCTAssertEqual(gate.decide(newLoss: 0.5, previousLoss: 1.0), .promote)
        guard case .reject(let why) = gate.decide(newLoss: 0.97, previousLoss: 1.0) else { return XCTFail() }
        XCTAssertTrue(why.contains("0.97"))
        XCTAssertNotEqual(gate.decide(newLoss: .nan, previousLoss: 1.0), .promote)
    }

    func testScheduleWarmupAndDecay() {
        var h = FineTuneHyperparameters()
        h.learningRate = 1e-3; h.warmupSteps = 2; h.schedule = .cosine
        XCTAssertEqual(h.learningRate(at: 0, of: 10), 1e-3 / 3, accuracy: 1e-9)
        XCTAssertEqual(h.learningRate(at: 2, of: 10), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(h.learningRate(at: 6, of: 10), 0.5e-3, accuracy: 1e-6)
        h.schedule = .linear
        XCTAssertEqual(h.learningRate(at: 6, of: 10), 0.5e-3, accuracy: 1e-9)
        h.schedule = .constant
        XCTAssertEqual(h.learningRate(at: 9, of: 10), 1e-3)
        h.rank = 0
        XCTAssertThrowsError(try h.validate())
    }
}
